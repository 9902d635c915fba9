//! Clients for the moto server that `scripts/test` starts. Tests fail loudly
//! when it is not there: a missing emulator is never a skipped test.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_kms::types::KeyUsageType;

pub const ENDPOINT_VARIABLE: &str = "MOTO_ENDPOINT";

pub fn endpoint() -> String {
    match std::env::var(ENDPOINT_VARIABLE) {
        Ok(endpoint) if !endpoint.is_empty() => endpoint,
        _ => panic!(
            "{ENDPOINT_VARIABLE} is not set: these tests need the moto server. Run them with scripts/test, \
             which installs and starts it (or start scripts/lib/moto_serialized.py yourself and export {ENDPOINT_VARIABLE})."
        ),
    }
}

/// The service's own SDK settings (retries, timeouts), pointed at `endpoint`.
pub async fn sdk_config_at(endpoint: &str) -> aws_config::SdkConfig {
    let credentials = aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "moto");
    connections::aws::loader()
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
        .load()
        .await
}

pub async fn dynamodb() -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&sdk_config_at(&endpoint()).await)
}

pub async fn kms() -> aws_sdk_kms::Client {
    aws_sdk_kms::Client::new(&sdk_config_at(&endpoint()).await)
}

pub async fn secretsmanager() -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&sdk_config_at(&endpoint()).await)
}

/// A new Secrets Manager secret holding `text`; its ARN.
pub async fn create_secret(name: &str, text: &str) -> String {
    let created = secretsmanager().await.create_secret().name(name).secret_string(text).send().await;
    created.expect("create the secret").arn.expect("an ARN")
}

/// The table definition of `infra/template.yaml`: what gets deployed is what the tests run on.
pub struct TableDefinition {
    pub attributes: Vec<(String, String)>,
    pub keys: Vec<(String, String)>,
    pub ttl_attribute: Option<String>,
    pub indexes: Vec<IndexDefinition>,
}

/// A global secondary index: name, (attribute, key type) pairs, projection type.
pub type IndexDefinition = (String, Vec<(String, String)>, String);

pub fn template_table() -> TableDefinition {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/template.yaml");
    let text = std::fs::read_to_string(&path).expect("infra/template.yaml");
    let template: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("the template is YAML");
    let properties = &template["Resources"]["ConnectionsTable"]["Properties"];
    let pairs = |list: &serde_yaml_ng::Value, a: &str, b: &str| -> Vec<(String, String)> {
        list.as_sequence()
            .expect("a list in the table definition")
            .iter()
            .map(|item| (item[a].as_str().unwrap().to_owned(), item[b].as_str().unwrap().to_owned()))
            .collect()
    };
    TableDefinition {
        attributes: pairs(&properties["AttributeDefinitions"], "AttributeName", "AttributeType"),
        keys: pairs(&properties["KeySchema"], "AttributeName", "KeyType"),
        ttl_attribute: properties["TimeToLiveSpecification"]["AttributeName"].as_str().map(str::to_owned),
        indexes: properties["GlobalSecondaryIndexes"]
            .as_sequence()
            .map(|list| {
                list.iter()
                    .map(|index| {
                        (
                            index["IndexName"].as_str().unwrap().to_owned(),
                            pairs(&index["KeySchema"], "AttributeName", "KeyType"),
                            index["Projection"]["ProjectionType"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// A fresh table created from the template's own definition, named uniquely per test.
pub async fn create_table(client: &aws_sdk_dynamodb::Client) -> String {
    let definition = template_table();
    let name = format!("connections-{}", uuid_like());
    let mut request = client.create_table().table_name(&name).billing_mode(BillingMode::PayPerRequest);
    for (attribute, kind) in &definition.attributes {
        let definition = AttributeDefinition::builder()
            .attribute_name(attribute)
            .attribute_type(ScalarAttributeType::from(kind.as_str()))
            .build()
            .unwrap();
        request = request.attribute_definitions(definition);
    }
    for (attribute, kind) in &definition.keys {
        let key = KeySchemaElement::builder()
            .attribute_name(attribute)
            .key_type(KeyType::from(kind.as_str()))
            .build()
            .unwrap();
        request = request.key_schema(key);
    }
    for (index, keys, projection) in &definition.indexes {
        let mut gsi = GlobalSecondaryIndex::builder()
            .index_name(index)
            .projection(Projection::builder().projection_type(ProjectionType::from(projection.as_str())).build());
        for (attribute, kind) in keys {
            gsi = gsi.key_schema(
                KeySchemaElement::builder()
                    .attribute_name(attribute)
                    .key_type(KeyType::from(kind.as_str()))
                    .build()
                    .unwrap(),
            );
        }
        request = request.global_secondary_indexes(gsi.build().unwrap());
    }
    request.send().await.expect("create table in moto");
    if let Some(attribute) = definition.ttl_attribute {
        let ttl = TimeToLiveSpecification::builder().attribute_name(attribute).enabled(true).build().unwrap();
        client
            .update_time_to_live()
            .table_name(&name)
            .time_to_live_specification(ttl)
            .send()
            .await
            .expect("enable TTL");
    }
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

/// Calls the emulator counted, by operation (`GetItem <table>`, `TrentService.Decrypt <key>`, ...),
/// as `scripts/lib/moto_serialized.py` serves them; to prove what was (and was not) called.
pub async fn call_counts() -> std::collections::HashMap<String, u64> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = format!("{}/conflict-emulation/stats", endpoint());
    let text = reqwest::get(url).await.expect("the emulator's call counts").text().await.unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    serde_json::from_value(body["operations"].clone()).unwrap_or_default()
}
