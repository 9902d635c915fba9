//! The service as a newcomer runs it, driven over real HTTP against the fake
//! Bitbucket: the local server `scripts/run` starts (`connections-local`), and
//! `cargo lambda watch` from the repository root with the workspace's router.

use std::time::Duration;

use blackbox::fake_bitbucket::*;
use blackbox::local::{
    build_functions, build_local_server, client, start_local, start_local_with, start_watch, wait_until_listening,
};
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
async fn the_local_server_serves_the_full_lifecycle_and_invocations() {
    build_local_server();
    let data = tempfile::tempdir().unwrap();
    let local = start_local(data.path());
    lifecycle(&local.base, data.path()).await;
    invoke_examples(&local.base).await;
}

#[tokio::test]
async fn cargo_lambda_watch_serves_the_full_lifecycle_and_invocations() {
    build_functions();
    let data = tempfile::tempdir().unwrap();
    let watch = start_watch(data.path());
    lifecycle(&watch.base, data.path()).await;
    invoke_examples(&watch.base).await;
}

/// Add, list, isolation between users, rename, re-verify, delete.
async fn lifecycle(base: &str, data: &std::path::Path) {
    let fake = FakeBitbucket::start().await;
    let client = client();
    let collection = format!("{base}/connections");
    // Under the watch the first request to each function compiles it; wait for the server first.
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
    assert!(data.join("connections.sqlite3").exists(), "the embedded store lives in the configured directory");
}

/// The README's `scripts/invoke FUNCTION EVENT_FILE`, as written, against the server at
/// `base`. (add's example would ask the real Bitbucket, which tests never reach.)
async fn invoke_examples(base: &str) {
    let port = base.rsplit(':').next().unwrap().to_owned();
    let root = blackbox::local::repository_root();
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

/// 1,200 requests from 8 clients across every HTTP function: the page and its
/// 24 KB script, list, get, rename, re-verify, browse and add. Every one is answered
/// by its function, whole. (`cargo lambda watch` cut about 1 in 700 of these:
/// tests/examples/local_soak.rs measures both.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_server_answers_every_request_of_a_mixed_load_whole() {
    build_local_server();
    let fake = FakeBitbucket::start().await;
    let data = tempfile::tempdir().unwrap();
    // Every request here verifies; the per-owner limit has its own tests.
    let local = start_local_with(data.path(), &[("VERIFICATIONS_PER_MINUTE", "100000")]);
    let _ = client(); // installs the crypto provider reqwest is built without
    // A stall shows as a timeout.
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    wait_until_listening(&http, &format!("{}/", local.base)).await;
    let script = http.get(format!("{}/app.js", local.base)).send().await.unwrap().bytes().await.unwrap();
    assert!(script.len() > 16 * 1024, "the script is larger than the first read of a body");
    let mut ids = Vec::new();
    for i in 0..4 {
        let body = json!({"name": format!("c{i}"), "url": fake.url("cloud"), "username": API_TOKEN_EMAIL, "password": API_TOKEN_ALL_SCOPES});
        let (status, created) =
            call(&http, reqwest::Method::POST, format!("{}/connections", local.base), "alice", Some(body)).await;
        assert_eq!(status, 201, "{created}");
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let clients = (0..8).map(|worker: usize| {
        let (http, base, ids, url, script) = (http.clone(), local.base.clone(), ids.clone(), fake.url("cloud"), script.clone());
        tokio::spawn(async move {
            let mut wrong = Vec::new();
            for n in 0..150 {
                let id = &ids[(n + worker) % ids.len()];
                let (what, request, expected) = match (n + worker) % 8 {
                    0 => ("page", http.get(format!("{base}/")), 200),
                    1 => ("app.js", http.get(format!("{base}/app.js")), 200),
                    2 => ("list", http.get(format!("{base}/connections")), 200),
                    3 => ("get", http.get(format!("{base}/connections/{id}")), 200),
                    4 => ("rename", http.patch(format!("{base}/connections/{id}")).header("content-type", "application/json").body(json!({"name": format!("r{worker}-{n}")}).to_string()), 200),
                    5 => ("verify", http.post(format!("{base}/connections/{id}/verify")), 200),
                    6 => ("browse", http.get(format!("{base}/connections/{id}/workspaces")), 200),
                    _ => ("add", http.post(format!("{base}/connections")).header("content-type", "application/json").body(json!({"name": format!("a{worker}-{n}"), "url": url, "username": API_TOKEN_EMAIL, "password": "wrong"}).to_string()), 422),
                };
                let outcome = match request.header("x-dev-user", "alice").send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        match response.bytes().await {
                            Ok(body) if status != expected => Err(format!("{status}: {}", String::from_utf8_lossy(&body))),
                            Ok(body) if what == "app.js" && body != script => Err(format!("{} of {} bytes", body.len(), script.len())),
                            Ok(body) if what != "app.js" && what != "page" && serde_json::from_slice::<Value>(&body).is_err() => {
                                Err(format!("not JSON: {}", String::from_utf8_lossy(&body)))
                            }
                            Ok(_) => Ok(()),
                            Err(error) => Err(format!("the body broke off: {error}")),
                        }
                    }
                    Err(error) => Err(format!("no answer: {error}")),
                };
                if let Err(why) = outcome {
                    wrong.push(format!("{what} #{n} of client {worker}: {why}"));
                }
            }
            wrong
        })
    });
    let mut wrong = Vec::new();
    for client in clients {
        wrong.extend(client.await.unwrap());
    }
    assert!(
        wrong.is_empty(),
        "{} of 1,200 requests went wrong:\n{}\n{}",
        wrong.len(),
        wrong.join("\n"),
        local.log_tail(20)
    );
}
