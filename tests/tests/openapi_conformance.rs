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

    // The pickers, through a connection that may list workspaces, and a Data Center one.
    let all = api
        .send(post().json(json!({"name": "all", "url": fake.url("cloud"), "username": API_TOKEN_EMAIL, "password": API_TOKEN_ALL_SCOPES})))
        .await;
    let browse = format!("/connections/{}", all.json["id"].as_str().unwrap());
    let dc_browse = format!("/connections/{}", dc.json["id"].as_str().unwrap());
    let get = |path: String| Call::get(path).user("alice");
    for (template, reply) in [
        ("/connections/{id}/workspaces", api.send(get(format!("{browse}/workspaces"))).await),
        ("/connections/{id}/workspaces", api.send(get(format!("{dc_browse}/workspaces"))).await),
        ("/connections/{id}/workspaces", api.send(get(format!("{missing}/workspaces"))).await),
        (
            "/connections/{id}/repositories",
            api.send(get(format!("{browse}/repositories")).query("workspace", "acme")).await,
        ),
        (
            "/connections/{id}/repositories",
            api.send(get(format!("{dc_browse}/repositories")).query("workspace", "OPS")).await,
        ),
        ("/connections/{id}/repositories", api.send(get(format!("{browse}/repositories"))).await),
        (
            "/connections/{id}/repositories",
            api.send(get(format!("{browse}/repositories")).query("workspace", "nobody")).await,
        ),
        (
            "/connections/{id}/repositories/{workspace}/{repo}/branches",
            api.send(get(format!("{browse}/repositories/acme/api/branches"))).await,
        ),
        (
            "/connections/{id}/repositories/{workspace}/{repo}/branches",
            api.send(get(format!("{dc_browse}/repositories/OPS/infra/branches"))).await,
        ),
    ] {
        c.check("GET", template, &reply);
    }

    let statuses: std::collections::BTreeSet<&str> = c.checked.iter().map(|s| s.rsplit(' ').next().unwrap()).collect();
    assert_eq!(
        statuses.into_iter().collect::<Vec<_>>(),
        vec!["200", "201", "204", "400", "401", "404", "409", "412", "413", "415", "422", "502", "503", "504"]
    );
}

/// The request schemas state the server's real rules: for each body, the
/// document accepts it exactly when the server does not refuse its shape
/// (`validation_failed`, `malformed_json`). Generated clients and form
/// validators then agree with the server.
#[tokio::test]
async fn request_schemas_accept_what_the_server_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::embedded(dir.path(), test_settings());
    let fake = FakeBitbucket::start().await;
    let conformance = Conformance { doc: document(), checked: Vec::new() };
    let schema = |operation: &str| {
        let doc = &conformance.doc;
        let (path, method) = match operation {
            "create" => ("/connections", "post"),
            _ => ("/connections/{id}", "patch"),
        };
        resolve(doc, &doc["paths"][path][method]["requestBody"])["content"]["application/json"]["schema"].clone()
    };
    let accepts = |schema: &Value, body: &Value| {
        let mut root = json!({"allOf": [schema], "components": conformance.doc["components"]});
        root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
        // Formats (date, uri) are asserted, as form validators do.
        jsonschema::options().should_validate_formats(true).build(&root).unwrap().is_valid(body)
    };
    let good = json!({"name": "work", "url": fake.url("cloud"), "username": API_TOKEN_EMAIL, "password": API_TOKEN});
    let with = |key: &str, value: Value| {
        let mut body = good.clone();
        body[key] = value;
        body
    };
    let creates = [
        good.clone(),
        with("password", json!("é".repeat(1024))),
        with("password", json!("é".repeat(1025))),
        with("password", json!(" padded")),
        with("password", json!("tab\tinside")),
        with("name", json!("   ")),
        with("name", json!("a\u{7}b")),
        with("name", json!("bidi\u{202e}")),
        with("name", json!("x".repeat(101))),
        with("username", json!("has space")),
        with("username", json!("a:b")),
        with("url", json!("")),
        with("url", json!("not a url")),
        with("url", json!("ftp://x.example/2.0")),
        // "in the future" depends on the clock, which no schema can state: the description says it.
        with("expires_at", json!("next tuesday")),
        with("expires_at", json!("2030-02-30")),
        with("credential_type", json!("ssh")),
        with("extra", json!(1)),
        with("resource", json!("acme/api")),
        json!(0),
        json!([good.clone()]),
    ];
    for body in creates {
        let reply = api.send(Call::post("/connections").user("alice").json(body.clone())).await;
        let server_accepts = !matches!(reply.code(), "validation_failed" | "malformed_json");
        assert_eq!(accepts(&schema("create"), &body), server_accepts, "create {body}: server said {}", reply.text);
    }
    let created = api.send(Call::post("/connections").user("alice").json(with("name", json!("patched")))).await;
    let path = format!("/connections/{}", created.json["id"].as_str().unwrap());
    let patches = [
        json!({"name": "renamed"}),
        json!({"confirm_account_change": false}),
        json!({"confirm_account_change": true}),
        json!({"expires_at": null}),
        json!({}),
        json!({"password": "é".repeat(1025)}),
        json!({"name": "\u{feff}"}),
        json!({"resource": "acme/api", "credential_type": "api_token", "username": API_TOKEN_EMAIL}),
        json!(0),
    ];
    for body in patches {
        let reply = api.send(Call::patch(&path).user("alice").json(body.clone())).await;
        let server_accepts = !matches!(reply.code(), "validation_failed" | "malformed_json");
        assert_eq!(accepts(&schema("patch"), &body), server_accepts, "patch {body}: server said {}", reply.text);
    }
}
