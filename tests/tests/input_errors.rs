//! Hostile and malformed input: always a clean 4xx problem with a stable code,
//! never a 5xx, and nothing written.

use blackbox::api::{Api, Call, Reply, test_settings};
use serde_json::json;

fn api() -> (Api, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Api::embedded(dir.path(), test_settings()), dir)
}

fn assert_problem(reply: &Reply, status: u16, code: &str) {
    assert_eq!((reply.status, reply.code()), (status, code), "{}", reply.text);
    assert_eq!(reply.header("content-type"), Some("application/problem+json"));
}

#[tokio::test]
async fn bodies_that_are_not_json_objects() {
    let (api, _dir) = api();
    let post = || Call::post("/connections").user("alice");
    assert_problem(
        &api.send(post().raw_body("application/json", b"{\"name\": ".to_vec())).await,
        400,
        "malformed_json",
    );
    assert_problem(&api.send(post().raw_body("application/json", b"[1,2]".to_vec())).await, 400, "malformed_json");
    assert_problem(&api.send(post().raw_body("application/json", Vec::new())).await, 400, "malformed_json");
    assert_problem(&api.send(post().raw_body("application/json", vec![0xff, 0xfe, 0x00])).await, 400, "malformed_json");
    assert_problem(&api.send(post().raw_body("text/plain", b"{}".to_vec())).await, 415, "unsupported_media_type");
    assert_problem(&api.send(post()).await, 415, "unsupported_media_type");
    let huge = json!({"name": "x".repeat(20_000)});
    assert_problem(&api.send(post().json(huge)).await, 413, "payload_too_large");
    let ok_charset = api.send(post().raw_body("application/json; charset=utf-8", b"{}".to_vec())).await;
    assert_problem(&ok_charset, 422, "validation_failed");
}

#[tokio::test]
async fn every_bad_field_is_named() {
    let (api, _dir) = api();
    let reply = api
        .send(Call::post("/connections").user("alice").json(json!({
            "name": "", "url": "not a url", "username": ["x"], "credential_type": "ssh", "owner": "bob"
        })))
        .await;
    assert_problem(&reply, 422, "validation_failed");
    let fields: Vec<&str> =
        reply.json["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    for field in ["owner", "name", "url", "username", "password", "credential_type"] {
        assert!(fields.contains(&field), "{field} missing from {fields:?}");
    }
    let long = api
        .send(Call::post("/connections").user("alice").json(json!({
            "name": "x".repeat(101), "username": "u".repeat(256), "password": "p".repeat(1025)
        })))
        .await;
    assert_eq!(long.json["errors"].as_array().unwrap().len(), 3, "{}", long.text);
}

#[tokio::test]
async fn ids_that_cannot_exist_are_simply_not_found() {
    let (api, _dir) = api();
    let long = "a".repeat(10_000);
    for id in [
        "..",
        "%2F..%2Fetc",
        "ünïcödé",
        "01934A6E-0000-7000-8000-000000000000",
        "{01934a6e-0000-7000-8000-000000000000}",
        long.as_str(),
    ] {
        assert_problem(&api.send(Call::get(format!("/connections/{id}")).user("alice")).await, 404, "not_found");
        assert_problem(&api.send(Call::delete(format!("/connections/{id}")).user("alice")).await, 404, "not_found");
        let patch = Call::patch(format!("/connections/{id}")).user("alice").json(json!({"name": "n"}));
        assert_problem(&api.send(patch).await, 404, "not_found");
        assert_problem(
            &api.send(Call::post(format!("/connections/{id}/verify")).user("alice")).await,
            404,
            "not_found",
        );
    }
}

#[tokio::test]
async fn list_limits_and_cursors_are_checked() {
    let (api, _dir) = api();
    for limit in ["-1", "0", "101", "100000000000000000000", "ten", ""] {
        let reply = api.send(Call::get("/connections").user("alice").query("limit", limit)).await;
        assert_problem(&reply, 422, "validation_failed");
        assert_eq!(reply.json["errors"][0]["field"], "limit");
    }
    for cursor in ["garbage", "YzE6Li4v", "%00"] {
        let reply = api.send(Call::get("/connections").user("alice").query("cursor", cursor)).await;
        assert_problem(&reply, 422, "validation_failed");
    }
}

#[tokio::test]
async fn patches_must_say_something_valid() {
    let (api, _dir) = api();
    let id = "01934a6e-0000-7000-8000-000000000000";
    let empty = api.send(Call::patch(format!("/connections/{id}")).user("alice").json(json!({}))).await;
    assert_problem(&empty, 422, "validation_failed");
    let typed = api
        .send(Call::patch(format!("/connections/{id}")).user("alice").json(json!({"confirm_account_change": "yes"})))
        .await;
    assert_problem(&typed, 422, "validation_failed");
    let bad_etag = api
        .send(
            Call::patch(format!("/connections/{id}"))
                .user("alice")
                .header("if-match", "garbage")
                .json(json!({"name": "n"})),
        )
        .await;
    // RFC 9110 §13.2.2: the precondition is judged only once the resource exists.
    assert_problem(&bad_etag, 404, "not_found");
}
