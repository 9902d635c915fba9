//! AWS SDK configuration with deliberate retries and timeouts, so every call
//! ends well inside the function's own timeout.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use std::sync::{Arc, LazyLock};

use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};

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

/// The configuration Lambda's environment describes, built once per process: a
/// function with several clients (recheck: DynamoDB, KMS, EventBridge, SQS) shares it
/// and one HTTP client. Built by hand rather than by aws-config's loader, whose
/// credential chains (profiles, STS web identity, containers, instance metadata) a
/// Lambda function never reaches and whose code was 0.56 MB of every function
/// (0.21 MB zipped; docs/performance.md).
pub fn sdk_config() -> Result<SdkConfig, String> {
    static BUILT: std::sync::OnceLock<Result<SdkConfig, String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            crate::partition::prepare(variable);
            from_environment(variable)
        })
        .clone()
}

fn variable(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// The SDK configuration from these variables, as the AWS SDKs read them:
/// `AWS_REGION` (or `AWS_DEFAULT_REGION`); the role's keys (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), which Lambda sets for the life of
/// the execution environment; `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>`
/// unless `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS`; `AWS_USE_FIPS_ENDPOINT` and
/// `AWS_USE_DUALSTACK_ENDPOINT`. Retries and timeouts are the service's own.
fn from_environment(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Result<SdkConfig, String> {
    let lookup: Lookup = Arc::new(lookup);
    let (region, credentials) = environment_identity(&*lookup).ok_or(
        "AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set, as Lambda sets them \
         (to run against AWS from a shell: eval \"$(aws configure export-credentials --format env)\")",
    )?;
    let on = |name: &str| lookup(name).is_some_and(|value| value.eq_ignore_ascii_case("true"));
    let mut config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(region)
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .http_client(http::SdkHttpClient(HTTP.clone()))
        .retry_config(retry_config())
        .timeout_config(timeout_config())
        .use_fips(on("AWS_USE_FIPS_ENDPOINT"))
        .use_dual_stack(on("AWS_USE_DUALSTACK_ENDPOINT"));
    if !on("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS") {
        config.set_endpoint_url(lookup("AWS_ENDPOINT_URL"));
        config.set_service_config(Some(EnvironmentEndpoints(lookup)));
    }
    Ok(config.build())
}

/// `AWS_ENDPOINT_URL_DYNAMODB` and the like: each client asks for its own variable
/// (the service id upper-cased, spaces as underscores) before the global one.
struct EnvironmentEndpoints(Lookup);

type Lookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

impl std::fmt::Debug for EnvironmentEndpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnvironmentEndpoints")
    }
}

impl LoadServiceConfig for EnvironmentEndpoints {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        let service = key.service_id().to_uppercase().replace(' ', "_");
        (self.0)(&format!("{}_{service}", key.env())).or_else(|| (self.0)(key.env()))
    }
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
/// Lambda's always does.
fn environment_identity(lookup: impl Fn(&str) -> Option<String>) -> Option<(Region, Credentials)> {
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
        .retry_config(retry_config())
        .timeout_config(timeout_config())
}

fn retry_config() -> RetryConfig {
    RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS)
}

fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use aws_sdk_dynamodb::config::ProvideCredentials;

    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        move |name| vars.get(name).cloned()
    }

    const LAMBDA: &[(&str, &str)] = &[
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI"),
        ("AWS_SESSION_TOKEN", "session"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> SdkConfig {
        from_environment(lookup(&[LAMBDA, extra].concat())).unwrap()
    }

    fn endpoint_for(config: &SdkConfig, service_id: &str) -> Option<String> {
        let key = ServiceConfigKey::builder()
            .service_id(service_id)
            .env("AWS_ENDPOINT_URL")
            .profile("endpoint_url")
            .build()
            .unwrap();
        config.service_config()?.load_config(key)
    }

    #[tokio::test]
    async fn lambda_environment_supplies_region_and_session_credentials() {
        let config = with(&[]);
        assert_eq!(config.region().unwrap().as_ref(), "eu-west-1");
        let resolved = config.credentials_provider().unwrap().provide_credentials().await.unwrap();
        assert_eq!(resolved.access_key_id(), "AKIDEXAMPLE");
        assert_eq!(resolved.session_token(), Some("session"));
        assert!(!format!("{resolved:?}{config:?}").contains("wJalrXUtnFEMI"), "the secret key stays out of Debug");
        assert_eq!((config.use_fips(), config.use_dual_stack()), (Some(false), Some(false)));
        assert_eq!(config.retry_config().unwrap().max_attempts(), MAX_ATTEMPTS);
        assert_eq!(config.timeout_config().unwrap().operation_timeout(), Some(OPERATION_TIMEOUT));
    }

    #[test]
    fn without_region_or_keys_start_up_says_what_to_set() {
        for partial in [
            &[("AWS_ACCESS_KEY_ID", "A"), ("AWS_SECRET_ACCESS_KEY", "S")][..],
            &[("AWS_REGION", "eu-west-1"), ("AWS_PROFILE", "dev")],
        ] {
            let error = from_environment(lookup(partial)).unwrap_err();
            assert!(error.contains("AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"), "{error}");
        }
        let only_default =
            lookup(&[("AWS_DEFAULT_REGION", "us-east-2"), ("AWS_ACCESS_KEY_ID", "A"), ("AWS_SECRET_ACCESS_KEY", "S")]);
        assert_eq!(from_environment(only_default).unwrap().region().unwrap().as_ref(), "us-east-2");
    }

    #[test]
    fn a_service_endpoint_variable_comes_before_the_global_one() {
        let config = with(&[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
            ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:2"),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:3"),
        ]);
        assert_eq!(config.endpoint_url(), Some("http://127.0.0.1:1"));
        assert_eq!(endpoint_for(&config, "DynamoDB").as_deref(), Some("http://127.0.0.1:2"));
        assert_eq!(endpoint_for(&config, "Secrets Manager").as_deref(), Some("http://127.0.0.1:3"));
        assert_eq!(endpoint_for(&config, "KMS").as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(endpoint_for(&with(&[]), "KMS"), None);
    }

    #[test]
    fn configured_endpoints_can_be_ignored_and_fips_and_dual_stack_chosen() {
        let config = with(&[
            ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:2"),
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
            ("AWS_USE_FIPS_ENDPOINT", "true"),
            ("AWS_USE_DUALSTACK_ENDPOINT", "TRUE"),
        ]);
        assert_eq!(endpoint_for(&config, "DynamoDB"), None);
        assert_eq!((config.use_fips(), config.use_dual_stack()), (Some(true), Some(true)));
    }
}
