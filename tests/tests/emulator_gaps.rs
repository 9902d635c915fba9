//! Header values and bodies that are not UTF-8, sent to the functions as API Gateway
//! delivers them: such a header as text, such a body base64-encoded. The functions
//! answer with a 4xx problem. (`cargo lambda watch` answers these with its own 500
//! before any function runs; the local server passes them on as API Gateway does, and
//! tests/tests/schemathesis.rs sends them too. A body of `ff fe 00` on
//! `POST /connections` is in tests/tests/input_errors.rs.)

use blackbox::api::{Api, Call, Reply, test_settings};
use blackbox::fake_bitbucket::*;
use serde_json::json;

/// What Latin-1 header bytes and a broken UTF-8 sequence can arrive as.
const NOT_ASCII: [&str; 4] = ["\u{e9}", "\u{fffd}", "\u{c5}\u{ad}l\u{80}&[Ug", "\"1\"\u{e9}"];

fn assert_problem(reply: &Reply, status: u16, code: &str, what: &str) {
    assert_eq!((reply.status, reply.code()), (status, code), "{what}: {}", reply.text);
    assert_eq!(reply.header("content-type"), Some("application/problem+json"), "{what}");
}

async fn with_a_connection() -> (Api, FakeBitbucket, tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::embedded(dir.path(), test_settings());
    let fake = FakeBitbucket::start().await;
    let body = json!({"name": "work", "url": fake.url("cloud"), "username": API_TOKEN_EMAIL, "password": API_TOKEN});
    let created = api.send(Call::post("/connections").user("alice").json(body)).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let path = format!("/connections/{}", created.json["id"].as_str().unwrap());
    (api, fake, dir, path)
}

#[tokio::test]
async fn header_values_beyond_ascii_are_answered_with_problems() {
    let (api, fake, _dir, path) = with_a_connection().await;
    for value in NOT_ASCII {
        let what = format!("If-Match {value:?}");
        // Not an entity tag, so it matches nothing: the connection is left alone.
        let patch = Call::patch(&path).user("alice").header("if-match", value).json(json!({"name": "renamed"}));
        assert_problem(&api.send(patch).await, 412, "version_mismatch", &what);
        let delete = Call::delete(&path).user("alice").header("if-match", value);
        assert_problem(&api.send(delete).await, 412, "version_mismatch", &what);

        let what = format!("Idempotency-Key {value:?}");
        let body =
            json!({"name": "other", "url": fake.url("cloud"), "username": API_TOKEN_EMAIL, "password": API_TOKEN});
        let post = Call::post("/connections").user("alice").header("idempotency-key", value).json(body);
        let reply = api.send(post).await;
        assert_problem(&reply, 422, "validation_failed", &what);
        assert_eq!(reply.json["errors"][0]["field"], "Idempotency-Key", "{what}");

        let what = format!("Content-Type {value:?}");
        let content_type = format!("application/json{value}");
        let post = Call::post("/connections").user("alice").raw_body(&content_type, b"{}".to_vec());
        assert_problem(&api.send(post).await, 415, "unsupported_media_type", &what);
        let patch = Call::patch(&path).user("alice").raw_body(&content_type, br#"{"name": "renamed"}"#.to_vec());
        assert_problem(&api.send(patch).await, 415, "unsupported_media_type", &what);
    }
    let reply = api.send(Call::get(&path).user("alice")).await;
    assert_eq!((reply.status, reply.json["name"].as_str(), reply.header("etag")), (200, Some("work"), Some("\"1\"")));
}

#[tokio::test]
async fn bodies_that_are_not_utf8_are_malformed_json() {
    let (api, _fake, _dir, path) = with_a_connection().await;
    for body in [vec![0xff, 0xfe, 0x00], b"{\"name\": \"\xe9\"}".to_vec(), vec![0x80]] {
        let what = format!("PATCH {body:02x?}");
        let reply = api.send(Call::patch(&path).user("alice").raw_body("application/json", body.clone())).await;
        assert_problem(&reply, 400, "malformed_json", &what);
        let unknown = Call::patch("/connections/01934a6e-0000-7000-8000-000000000000").user("alice");
        assert_problem(
            &api.send(unknown.raw_body("application/json", body.clone())).await,
            400,
            "malformed_json",
            &what,
        );
        let what = format!("POST {body:02x?}");
        let reply = api.send(Call::post("/connections").user("alice").raw_body("application/json", body)).await;
        assert_problem(&reply, 400, "malformed_json", &what);
    }
    let reply = api.send(Call::get(&path).user("alice")).await;
    assert_eq!((reply.status, reply.header("etag")), (200, Some("\"1\"")));
}
