//! AWS SDK configuration with deliberate retries and timeouts, so every call
//! ends well inside the function's own timeout.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::http::{HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
pub const MAX_ATTEMPTS: u32 = 3;

/// Region, credentials and endpoint as the standard chain finds them
/// (`AWS_REGION`, `AWS_ENDPOINT_URL*`, the Lambda role's keys, a profile),
/// loaded once per process: a function with several clients (recheck: DynamoDB,
/// KMS, EventBridge) shares one configuration and one HTTP client.
pub async fn sdk_config() -> SdkConfig {
    static LOADED: tokio::sync::OnceCell<SdkConfig> = tokio::sync::OnceCell::const_new();
    LOADED.get_or_init(load).await.clone()
}

async fn load() -> SdkConfig {
    crate::partition::prepare(|name| std::env::var(name).ok().filter(|value| !value.is_empty()));
    let loader = loader();
    match environment_identity(|name| std::env::var(name).ok()) {
        Some((region, credentials)) => loader.region(region).credentials_provider(credentials),
        None => loader,
    }
    .load()
    .await
}

/// An SDK client given ready-made, or built from a configuration on first use.
/// Building one parses its crate's endpoint partition table, which a start-up should
/// not pay for when the function may never call that service (a rename never needs
/// KMS; most recheck runs publish no event).
#[derive(Debug)]
pub struct LazyClient<C> {
    client: std::sync::OnceLock<C>,
    config: Option<SdkConfig>,
}

impl<C> LazyClient<C> {
    pub fn ready(client: C) -> Self {
        Self { client: std::sync::OnceLock::from(client), config: None }
    }

    pub fn on_first_use(config: SdkConfig) -> Self {
        Self { client: std::sync::OnceLock::new(), config: Some(config) }
    }

    /// The client, built with `build` the first time (only ever without a
    /// configuration if `ready`, when it is already built).
    pub fn get(&self, build: impl FnOnce(&SdkConfig) -> C) -> &C {
        self.client.get_or_init(|| match &self.config {
            Some(config) => build(config),
            None => build(&SdkConfig::builder().build()),
        })
    }
}

/// Smithy's HTTP client builds a TLS connector for every SDK client as it is
/// constructed, only to drop it (it warms a cache of the system's roots, which
/// compiled-in roots do not use), then builds the one it keeps on the first call.
/// This wrapper leaves out the dropped one, so a process builds one connector,
/// shared by its DynamoDB and KMS clients (0.28 M start-up instructions each).
#[derive(Debug)]
struct ConnectOnFirstCall(SharedHttpClient);

impl HttpClient for ConnectOnFirstCall {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn connector_metadata(&self) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

/// The region and the role's keys when the environment carries them, as
/// Lambda's always does. The default chains would find the same values, but
/// only after building an STS client, an instance-metadata client and profile
/// providers at start (1.5 M of list's 3.7 M start-up instructions).
pub fn environment_identity(lookup: impl Fn(&str) -> Option<String>) -> Option<(Region, Credentials)> {
    let var = |name: &str| lookup(name).filter(|value| !value.is_empty());
    let region = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION"))?;
    let credentials = Credentials::new(
        var("AWS_ACCESS_KEY_ID")?,
        var("AWS_SECRET_ACCESS_KEY")?,
        var("AWS_SESSION_TOKEN"),
        None,
        "Environment",
    );
    Some((Region::new(region), credentials))
}

/// The loader with the service's retry and timeout settings, for callers that
/// add an endpoint or credentials of their own (the tests' emulator).
pub fn loader() -> ConfigLoader {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .tls_context(
            tls::TlsContext::builder().with_trust_store(crate::tls::aws_trust_store()).build().unwrap_or_default(),
        )
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(ConnectOnFirstCall(http_client))
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(1))
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use aws_sdk_dynamodb::config::ProvideCredentials;

    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        move |name| vars.get(name).cloned()
    }

    #[tokio::test]
    async fn lambda_environment_supplies_region_and_session_credentials() {
        let env = lookup(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI"),
            ("AWS_SESSION_TOKEN", "session"),
        ]);
        let (region, credentials) = environment_identity(env).unwrap();
        assert_eq!(region.as_ref(), "eu-west-1");
        let resolved = credentials.provide_credentials().await.unwrap();
        assert_eq!(resolved.access_key_id(), "AKIDEXAMPLE");
        assert_eq!(resolved.session_token(), Some("session"));
        assert!(!format!("{resolved:?}").contains("wJalrXUtnFEMI"), "the secret key stays out of Debug");
    }

    #[test]
    fn without_region_or_keys_the_default_chain_decides() {
        assert!(environment_identity(lookup(&[("AWS_ACCESS_KEY_ID", "A"), ("AWS_SECRET_ACCESS_KEY", "S")])).is_none());
        assert!(environment_identity(lookup(&[("AWS_REGION", "eu-west-1"), ("AWS_PROFILE", "dev")])).is_none());
        let only_default =
            lookup(&[("AWS_DEFAULT_REGION", "us-east-2"), ("AWS_ACCESS_KEY_ID", "A"), ("AWS_SECRET_ACCESS_KEY", "S")]);
        assert_eq!(environment_identity(only_default).unwrap().0.as_ref(), "us-east-2");
    }
}
