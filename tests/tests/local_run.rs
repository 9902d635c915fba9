//! The service as a newcomer runs it: `cargo lambda watch` from the repository
//! root (what `scripts/run` starts), driven over real HTTP through the router in
//! the workspace metadata, against the fake Bitbucket.

use blackbox::fake_bitbucket::*;
use blackbox::watch::{build_functions, client, start_watch, wait_until_listening};
use serde_json::{Value, json};

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    user: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client.request(method, url).header("x-dev-user", user);
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_string());
    }
    let response = request.send().await.expect("the local service answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn cargo_lambda_watch_serves_the_full_lifecycle() {
    build_functions();
    let fake = FakeBitbucket::start().await;
    let data = tempfile::tempdir().unwrap();
    let watch = start_watch(data.path());
    let client = client();
    let collection = format!("{}/connections", watch.base);

    // The first request to each function compiles it; wait for the server itself first.
    wait_until_listening(&client, &collection).await;

    use reqwest::Method;
    let body = json!({"name": "work", "url": fake.url("cloud"), "username": API_TOKEN_EMAIL, "password": API_TOKEN});
    let (status, created) = call(&client, Method::POST, collection.clone(), "alice", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let item = format!("{collection}/{id}");

    let mut statuses = vec![status];
    let (status, listed) = call(&client, Method::GET, collection.clone(), "alice", None).await;
    statuses.push(status);
    assert_eq!(listed["items"][0]["id"], id.as_str());
    let (status, _) = call(&client, Method::GET, collection.clone(), "bob", None).await;
    statuses.push(status);
    let (status, bobs) = call(&client, Method::GET, item.clone(), "bob", None).await;
    statuses.push(status);
    assert_eq!(bobs["code"], "not_found", "the development identity still isolates users");
    let (status, renamed) = call(&client, Method::PATCH, item.clone(), "alice", Some(json!({"name": "home"}))).await;
    statuses.push(status);
    assert_eq!(renamed["name"], "home");
    let (status, verified) = call(&client, Method::POST, format!("{item}/verify"), "alice", None).await;
    statuses.push(status);
    assert_eq!(verified["status"], "verified");
    let (status, _) = call(&client, Method::DELETE, item.clone(), "alice", None).await;
    statuses.push(status);
    let (status, _) = call(&client, Method::GET, item.clone(), "alice", None).await;
    statuses.push(status);
    assert_eq!(statuses, vec![201, 200, 200, 404, 200, 200, 204, 404]);
    assert!(data.path().join("connections.sqlite3").exists(), "the embedded store lives in the configured directory");

    // The README's `scripts/invoke FUNCTION EVENT_FILE`, as written, against this run.
    // (add's example would ask the real Bitbucket, which tests never reach.)
    let port = watch.base.rsplit(':').next().unwrap().to_owned();
    let root = blackbox::watch::repository_root();
    let examples = [
        ("list", "functions/list/events/list.json", "statusCode\":200"),
        ("list", "functions/list/events/get.json", "statusCode\":404"),
        ("edit", "functions/edit/events/rename.json", "statusCode\":404"),
        ("edit", "functions/edit/events/verify.json", "statusCode\":404"),
        ("delete", "functions/delete/events/delete.json", "statusCode\":404"),
        ("browse", "functions/browse/events/repositories.json", "statusCode\":404"),
        ("web", "functions/web/events/index.json", "statusCode\":200"),
        ("credentials", "functions/credentials/events/git.json", "\"code\":\"not_found\""),
    ];
    for (function, event, expected) in examples {
        let output = tokio::task::spawn_blocking({
            let (root, port) = (root.clone(), port.clone());
            move || {
                std::process::Command::new(root.join("scripts/invoke"))
                    .current_dir(&root)
                    .args([function, event])
                    .env("PORT", port)
                    .output()
                    .expect("scripts/invoke runs")
            }
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).replace(": ", ":");
        assert!(
            output.status.success(),
            "scripts/invoke {function} {event}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains(expected), "scripts/invoke {function} {event} answered {stdout}");
    }
}
