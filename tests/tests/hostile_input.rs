//! Property tests: whatever arrives, the answer is a clean status with a problem
//! document, never a panic or a 5xx, and never another owner's data.

use blackbox::api::{Api, Call, test_settings};
use connections::domain::ServerUrl;
use connections::input::{parse_create, parse_list_query, parse_patch};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Objects that use the real field names, with values of any shape.
fn body_like() -> impl Strategy<Value = Map<String, Value>> {
    let field = prop_oneof![
        Just("name".to_owned()),
        Just("url".to_owned()),
        Just("username".to_owned()),
        Just("password".to_owned()),
        Just("credential_type".to_owned()),
        Just("confirm_account_change".to_owned()),
        ".{0,10}",
    ];
    let value = prop_oneof![json_value(), ".{0,300}".prop_map(Value::String)];
    prop::collection::btree_map(field, value, 0..7).prop_map(|m| m.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parsing_bodies_never_panics(body in body_like()) {
        let _ = parse_create(&body);
        let _ = parse_patch(&body);
    }

    #[test]
    fn parsing_urls_never_panics(text in ".{0,200}", tail in "[a-z0-9./:@%?#\\[\\]-]{0,60}") {
        let _ = ServerUrl::parse(&text);
        let _ = ServerUrl::parse(&format!("https://{tail}"));
    }

    #[test]
    fn parsing_queries_never_panics(limit in proptest::option::of(".{0,30}"), cursor in proptest::option::of(".{0,60}")) {
        let _ = parse_list_query(limit.as_deref(), cursor.as_deref());
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn any_request_gets_a_clean_answer(
        body in prop_oneof![
            body_like().prop_map(|b| Value::Object(b).to_string().into_bytes()),
            prop::collection::vec(any::<u8>(), 0..200),
        ],
        // Header values and path segments as API Gateway can deliver them.
        content_type in prop_oneof![Just("application/json".to_owned()), Just("text/plain".to_owned()), "[ -~]{0,20}"],
        id in prop_oneof!["[0-9a-f-]{36}", "[a-zA-Z0-9._~!$&'()*+,;=:@-]{1,80}", Just("01934a6e-0000-7000-8000-000000000000".to_owned())],
        limit in ".{0,12}",
        cursor in ".{0,40}",
        if_match in "[ -~]{0,10}",
    ) {
        let dir = tempfile::tempdir().unwrap();
        let api = Api::embedded(dir.path(), test_settings());
        let calls = vec![
            Call::post("/connections").user("alice").raw_body(&content_type, body.clone()),
            Call::get("/connections").user("alice").query("limit", &limit).query("cursor", &cursor),
            Call::get(format!("/connections/{id}")).user("alice"),
            Call::patch(format!("/connections/{id}")).user("alice").header("if-match", &if_match).raw_body(&content_type, body.clone()),
            Call::post(format!("/connections/{id}/verify")).user("alice"),
            Call::delete(format!("/connections/{id}")).user("alice").header("if-match", &if_match),
        ];
        let rt = runtime();
        for call in calls {
            let what = format!("{} {}", call.method, call.path);
            let reply = rt.block_on(api.send(call));
            prop_assert!(reply.status < 500, "{what} answered {}: {}", reply.status, reply.text);
            if reply.status >= 400 {
                prop_assert_eq!(reply.header("content-type"), Some("application/problem+json"));
                prop_assert!(reply.json["code"].is_string());
            }
        }
    }
}

#[tokio::test]
async fn tampered_and_foreign_cursors_never_reach_another_owner() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::embedded(dir.path(), test_settings());
    // Bob's page cursor names one of bob's ids; alice using it still sees only her (empty) list.
    let store = api.store.clone();
    let bob = connections::domain::Owner::parse("bob").unwrap();
    let mut connection = sample_connection();
    store.create(&bob, &connection, &connections::seal::Sealed(vec![1; 40]), 100, None).await.unwrap();
    connection.id = connections::domain::ConnectionId::new().to_string();
    connection.name = "second".into();
    store.create(&bob, &connection, &connections::seal::Sealed(vec![1; 40]), 100, None).await.unwrap();
    let bobs_page = api.send(Call::get("/connections").user("bob").query("limit", "1")).await;
    let cursor = bobs_page.json["next_cursor"].as_str().unwrap().to_owned();
    let alice = api.send(Call::get("/connections").user("alice").query("cursor", &cursor)).await;
    assert_eq!(alice.status, 200);
    assert_eq!(alice.json["items"], json!([]));
    let mut tampered = cursor.clone();
    tampered.push('A');
    let reply = api.send(Call::get("/connections").user("alice").query("cursor", &tampered)).await;
    assert_eq!(reply.status, 422);
}

fn sample_connection() -> connections::domain::Connection {
    let at = connections::domain::now();
    serde_json::from_value(json!({
        "id": connections::domain::ConnectionId::new().to_string(),
        "name": "first", "provider": "bitbucket_cloud", "url": "https://api.bitbucket.org/2.0",
        "username": "b", "credential_type": "api_token", "account": {}, "scopes": [], "status": "verified",
        "verified_at": at.format(&time::format_description::well_known::Rfc3339).unwrap(),
        "created_at": at.format(&time::format_description::well_known::Rfc3339).unwrap(),
        "updated_at": at.format(&time::format_description::well_known::Rfc3339).unwrap(),
        "version": 1
    }))
    .unwrap()
}
