//! Clients for the moto server that `scripts/test` starts. Tests fail loudly
//! when it is not there: a missing emulator is never a skipped test.

use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
use aws_sdk_kms::types::KeyUsageType;

pub const ENDPOINT_VARIABLE: &str = "MOTO_ENDPOINT";

pub fn endpoint() -> String {
    match std::env::var(ENDPOINT_VARIABLE) {
        Ok(endpoint) if !endpoint.is_empty() => endpoint,
        _ => panic!(
            "{ENDPOINT_VARIABLE} is not set: these tests need the moto server. Run them with scripts/test, \
             which installs and starts it (or start `moto_server` yourself and export {ENDPOINT_VARIABLE})."
        ),
    }
}

async fn sdk_config() -> aws_config::SdkConfig {
    let credentials = aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "moto");
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint())
        .credentials_provider(credentials)
        .load()
        .await
}

pub async fn dynamodb() -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&sdk_config().await)
}

pub async fn kms() -> aws_sdk_kms::Client {
    aws_sdk_kms::Client::new(&sdk_config().await)
}

/// A fresh table with the key schema the store uses, named uniquely per test.
pub async fn create_table(client: &aws_sdk_dynamodb::Client) -> String {
    let name = format!("connections-{}", uuid_like());
    let attribute = |n: &str| {
        AttributeDefinition::builder().attribute_name(n).attribute_type(ScalarAttributeType::S).build().unwrap()
    };
    let key = |n: &str, t| KeySchemaElement::builder().attribute_name(n).key_type(t).build().unwrap();
    client
        .create_table()
        .table_name(&name)
        .attribute_definitions(attribute("pk"))
        .attribute_definitions(attribute("sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create table in moto");
    name
}

pub async fn create_key(client: &aws_sdk_kms::Client) -> String {
    let key = client.create_key().key_usage(KeyUsageType::EncryptDecrypt).send().await.expect("create KMS key in moto");
    key.key_metadata().expect("key metadata").key_id().to_owned()
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{}-{nanos}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}
