//! Opening, while the function starts, the connections its first request will use.
//!
//! On AWS the first call to DynamoDB or KMS opens a TCP connection and a TLS session:
//! two round trips and a certificate verification, which the user's first click would
//! wait for. A warm-up runs the SDK's own pipeline for a call the function makes, so
//! the endpoint is exactly the one its calls resolve to (region, FIPS, dual-stack,
//! `AWS_ENDPOINT_URL*`), and marks it; the connector (`super::http`) does not send a
//! marked call but opens a connection to its endpoint with an unsigned `GET /` and
//! leaves it in the pool, where the first real call finds it. The call itself never
//! reaches the service's API: it uses no permission, bills nothing, and leaves no
//! CloudTrail event. The pipeline's first-use work (credentials, signing, endpoint
//! rules) is done here too, instead of in the first request.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};

/// The header that marks a call as a warm-up for the connector.
pub(super) const HEADER: &str = "x-connections-warm-up";

/// The most start-up waits for its connections; past it the first request opens its own.
pub const BUDGET: Duration = Duration::from_secs(2);

/// How a warm-up's call ends when the connector opened its connection.
#[derive(Debug)]
pub(super) struct Opened;

impl std::fmt::Display for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("warm-up: connection opened, call not sent")
    }
}

impl std::error::Error for Opened {}

fn mark(request: &mut HttpRequest) {
    request.headers_mut().insert(HEADER, "1");
}

/// Opens the connection DynamoDB calls on `table` will use; true if it is open.
/// `key` is any well-formed key of the table (the call is never sent).
pub async fn dynamodb(client: &aws_sdk_dynamodb::Client, table: &str, key: HashMap<String, AttributeValue>) -> bool {
    let call = client.get_item().table_name(table).set_key(Some(key));
    outcome("dynamodb", call.customize().mutate_request(mark).send().await)
}

/// Opens the connection KMS calls will use; true if it is open.
pub async fn kms(client: &aws_sdk_kms::Client, key_id: &str) -> bool {
    let call = client.generate_data_key().key_id(key_id).number_of_bytes(32);
    outcome("kms", call.customize().mutate_request(mark).send().await)
}

fn outcome<T, E: std::error::Error + 'static>(service: &str, result: Result<T, SdkError<E, HttpResponse>>) -> bool {
    let opened = match &result {
        Err(SdkError::DispatchFailure(failure)) => failure
            .as_connector_error()
            .and_then(std::error::Error::source)
            .is_some_and(|source| source.downcast_ref::<Opened>().is_some()),
        _ => false,
    };
    if !opened && let Err(error) = &result {
        // The first request will open its own; worth knowing if it keeps happening.
        let error = aws_smithy_types::error::display::DisplayErrorContext(error).to_string();
        tracing::warn!(service, error, "start-up did not open the connection for the first request");
    }
    opened
}
