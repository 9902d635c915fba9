//! AWS SDK configuration with deliberate retries and timeouts, so every call
//! ends well inside the function's own timeout.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};
use aws_smithy_http_client::tls;

pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
pub const MAX_ATTEMPTS: u32 = 3;

/// Region, credentials and endpoint come from the standard chain
/// (`AWS_REGION`, `AWS_ENDPOINT_URL*`, the Lambda role).
pub async fn sdk_config() -> SdkConfig {
    loader().load().await
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
        .http_client(http_client)
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(1))
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        )
}
