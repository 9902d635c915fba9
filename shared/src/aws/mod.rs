//! AWS SDK configuration with deliberate retries and timeouts, so every call
//! ends well inside the function's own timeout.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use std::sync::{Arc, LazyLock};

use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;

mod http;
pub mod warm;

pub use http::{AwsHttp, check_trust};

pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
pub const MAX_ATTEMPTS: u32 = 3;
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The process's one HTTP client for AWS, which every SDK client and the start-up
/// warm-up (`warm`) share, so that a connection opened at start serves the first call.
pub static HTTP: LazyLock<Arc<AwsHttp>> = LazyLock::new(Arc::default);

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
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http::SdkHttpClient(HTTP.clone()))
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
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
