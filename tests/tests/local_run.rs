//! The service as a newcomer runs it: `cargo lambda watch` from the repository
//! root (what `scripts/run` starts), driven over real HTTP through the router in
//! the workspace metadata, against the fake Bitbucket.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use blackbox::fake_bitbucket::*;
use serde_json::{Value, json};

struct Watch {
    child: Child,
    base: String,
}

impl Drop for Watch {
    fn drop(&mut self) {
        // cargo lambda runs each function as a child process: end the whole group.
        let _ = Command::new("kill").arg("--").arg(format!("-{}", self.child.id())).status();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn repository_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `cargo lambda watch` builds each function with `cargo run --bin <fn>` and the
/// features in the workspace's `lambda.watch` metadata (the embedded backend), a
/// feature set that differs from the test build's. Building the four binaries the
/// same way up front keeps that compile out of request timeouts.
fn build_functions() {
    let status = Command::new("cargo")
        .current_dir(repository_root())
        .args(["build", "--features", "connections/embedded"])
        .args(["--bin", "add", "--bin", "list", "--bin", "edit", "--bin", "delete"])
        .status()
        .expect("cargo");
    assert!(status.success(), "the four functions must build");
}

fn start_watch(data_dir: &std::path::Path) -> Watch {
    use std::os::unix::process::CommandExt;
    let port = free_port();
    let root = repository_root();
    let child = Command::new("cargo")
        .current_dir(&root)
        .args([
            "lambda",
            "watch",
            "--ignore-changes",
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
            &port.to_string(),
        ])
        .arg("--env-var")
        .arg(format!(
            "CONNECTIONS_DATA_DIR={},BITBUCKET_ALLOWED_PRIVATE=127.0.0.0/8,BITBUCKET_ALLOWED_HTTP=127.0.0.1",
            data_dir.display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("cargo lambda must be installed (scripts/test installs it into .venv/lambda)");
    Watch { child, base: format!("http://127.0.0.1:{port}") }
}

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
    // The workspace builds reqwest without a default crypto provider (the service
    // configures its own); this plain client needs one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(300)).build().unwrap();
    let collection = format!("{}/connections", watch.base);

    // The first request to each function compiles it; wait for the server itself first.
    let started = Instant::now();
    while client.get(&collection).send().await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(300), "cargo lambda watch did not start");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

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
}
