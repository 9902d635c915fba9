//! Real responses of the handlers validated against `infra/openapi.yaml`, so the
//! document cannot drift from behaviour: every status must be declared for its
//! operation, every body must match its schema, declared headers must be sent.

use std::collections::BTreeMap;

use blackbox::api::{Api, Call, Reply, test_settings};
use blackbox::fake_bitbucket::*;
use connections::problem::ApiError;
use serde_json::{Value, json};

fn document() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/openapi.yaml");
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    serde_json::to_value(yaml).unwrap()
}

/// Follows a local `$ref` (`#/components/...`).
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(pointer) => resolve(doc, doc.pointer(pointer.trim_start_matches('#')).expect("a $ref that resolves")),
        None => value,
    }
}

struct Conformance {
    doc: Value,
    checked: Vec<String>,
}

impl Conformance {
    fn check(&mut self, method: &str, template: &str, reply: &Reply) {
        let doc = &self.doc;
        let operation = &doc["paths"][template][method.to_ascii_lowercase()];
        assert!(operation.is_object(), "{method} {template} is not in the document");
        let status = reply.status.to_string();
        let response = operation["responses"].get(&status).unwrap_or_else(|| {
            panic!("{method} {template} answered {status}, which the document does not declare: {}", reply.text)
        });
        let response = resolve(doc, response);
        if let Some(headers) = response.get("headers").and_then(Value::as_object) {
            for (name, header) in headers {
                let value =
                    reply.header(name).unwrap_or_else(|| panic!("{method} {template} {status}: missing {name}"));
                let schema = resolve(doc, header)["schema"].clone();
                self.validate(&schema, &json!(value), &format!("{method} {template} {status} header {name}"));
            }
        }
        match response.get("content").and_then(Value::as_object) {
            Some(content) => {
                let media = reply.header("content-type").unwrap_or_default();
                let schema =
                    content.get(media).unwrap_or_else(|| {
                        panic!("{method} {template} {status}: {media} is not a declared media type")
                    })["schema"]
                        .clone();
                self.validate(&schema, &reply.json, &format!("{method} {template} {status} body"));
            }
            None => assert!(reply.text.is_empty(), "{method} {template} {status} must have no body"),
        }
        self.checked.push(format!("{method} {template} {status}"));
    }

    fn validate(&self, schema: &Value, instance: &Value, what: &str) {
        let mut root = schema.clone();
        if let Some(object) = root.as_object_mut() {
            object.insert("components".into(), self.doc["components"].clone());
            object.insert("$schema".into(), json!("https://json-schema.org/draft/2020-12/schema"));
        } else {
            root = json!({"allOf": [schema], "components": self.doc["components"]});
        }
        let validator = jsonschema::validator_for(&root).unwrap_or_else(|e| panic!("{what}: invalid schema: {e}"));
        let errors: Vec<String> =
            validator.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path)).collect();
        assert!(errors.is_empty(), "{what} does not match the document: {errors:?}\n{instance}");
    }
}

#[test]
fn every_problem_code_is_documented_with_its_status() {
    let doc = document();
    let documented: BTreeMap<String, u64> =
        doc["x-problem-codes"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap())).collect();
    let actual: BTreeMap<String, u64> =
        ApiError::catalogue().iter().map(|e| (e.code().to_owned(), u64::from(e.status().as_u16()))).collect();
    assert_eq!(documented, actual);
    let enumerated: Vec<&str> = doc["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let mut enumerated_sorted = enumerated.clone();
    enumerated_sorted.sort();
    assert_eq!(enumerated_sorted, actual.keys().map(String::as_str).collect::<Vec<_>>());
}

#[tokio::test]
async fn responses_match_the_openapi_document() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::embedded(dir.path(), test_settings());
    let fake = FakeBitbucket::start().await;
    let mut c = Conformance { doc: document(), checked: Vec::new() };
    let post = || Call::post("/connections").user("alice");
    let body = |name: &str, behaviour: &str| json!({"name": name, "url": fake.url(behaviour), "username": API_TOKEN_EMAIL, "password": API_TOKEN});

    let created = api.send(post().json(body("work", "cloud"))).await;
    c.check("POST", "/connections", &created);
    let id = created.json["id"].as_str().unwrap().to_owned();
    let dc = api.send(post().json(json!({"name": "dc", "url": format!("{}/rest/api/1.0", fake.url("dc")), "username": DC_USER, "password": DC_TOKEN}))).await;
    assert!(dc.json.get("url_normalized_from").is_some());
    c.check("POST", "/connections", &dc);
    for reply in [
        api.send(post().json(body("work", "cloud"))).await,
        api.send(post().json(json!({"name": "x", "url": fake.url("cloud"), "username": API_TOKEN_EMAIL, "password": "wrong"}))).await,
        api.send(post().json(json!({"name": "x", "url": fake.url("cloud"), "username": API_TOKEN_EMAIL, "password": API_TOKEN_WRITE_ONLY}))).await,
        api.send(post().json(body("y", "ratelimited"))).await,
        api.send(post().json(body("y", "broken"))).await,
        api.send(post().json(body("y", "slow"))).await,
        api.send(post().json(json!({"name": 3}))).await,
        api.send(post().raw_body("application/json", b"{".to_vec())).await,
        api.send(post().raw_body("text/plain", b"x".to_vec())).await,
        api.send(post().json(json!({"name": "x".repeat(20_000)}))).await,
        api.send(Call::post("/connections").json(body("z", "cloud"))).await,
    ] {
        c.check("POST", "/connections", &reply);
    }

    for reply in [
        api.send(Call::get("/connections").user("alice")).await,
        api.send(Call::get("/connections").user("alice").query("limit", "1")).await,
        api.send(Call::get("/connections").user("alice").query("limit", "0")).await,
        api.send(Call::get("/connections")).await,
    ] {
        c.check("GET", "/connections", &reply);
    }

    let item = format!("/connections/{id}");
    let missing = "/connections/01934a6e-0000-7000-8000-000000000000";
    c.check("GET", "/connections/{id}", &api.send(Call::get(&item).user("alice")).await);
    c.check("GET", "/connections/{id}", &api.send(Call::get(missing).user("alice")).await);

    let patch = |path: &str| Call::patch(path).user("alice");
    c.check("PATCH", "/connections/{id}", &api.send(patch(&item).json(json!({"name": "renamed"}))).await);
    c.check(
        "PATCH",
        "/connections/{id}",
        &api.send(patch(&item).header("if-match", "\"1\"").json(json!({"name": "again"}))).await,
    );
    c.check("PATCH", "/connections/{id}", &api.send(patch(&item).json(json!({"name": "dc"}))).await);
    c.check("PATCH", "/connections/{id}", &api.send(patch(&item).json(json!({"password": "wrong"}))).await);
    c.check("PATCH", "/connections/{id}", &api.send(patch(missing).json(json!({"name": "n"}))).await);

    c.check("POST", "/connections/{id}/verify", &api.send(Call::post(format!("{item}/verify")).user("alice")).await);
    fake.revoke(API_TOKEN);
    let invalid = api.send(Call::post(format!("{item}/verify")).user("alice")).await;
    assert_eq!(invalid.json["status"], "invalid");
    c.check("POST", "/connections/{id}/verify", &invalid);
    c.check("POST", "/connections/{id}/verify", &api.send(Call::post(format!("{missing}/verify")).user("alice")).await);

    c.check(
        "DELETE",
        "/connections/{id}",
        &api.send(Call::delete(&item).user("alice").header("if-match", "\"1\"")).await,
    );
    c.check("DELETE", "/connections/{id}", &api.send(Call::delete(&item).user("alice")).await);
    c.check("DELETE", "/connections/{id}", &api.send(Call::delete(&item).user("alice")).await);

    let statuses: std::collections::BTreeSet<&str> = c.checked.iter().map(|s| s.rsplit(' ').next().unwrap()).collect();
    assert_eq!(
        statuses.into_iter().collect::<Vec<_>>(),
        vec!["200", "201", "204", "400", "401", "404", "409", "412", "413", "415", "422", "502", "503", "504"]
    );
}
