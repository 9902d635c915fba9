//! The local server under the suite's mix: `cargo lambda watch` (as `scripts/run`
//! starts it) with the fake Bitbucket, 2,400 requests from 8 clients across every HTTP
//! function (the page and its script, list, get, rename, re-verify, browse, add).
//! Prints latency and every answer the emulator itself gave (its own 500s, stalls).
//!
//!     PATH="$PWD/.venv/lambda/bin:$PATH" cargo run -p blackbox --example local_soak

use std::time::{Duration, Instant};

use blackbox::fake_bitbucket::*;
use blackbox::watch::{build_functions, client, start_watch, wait_until_listening};
use serde_json::json;

const CLIENTS: usize = 8;
const PER_CLIENT: usize = 300;

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    build_functions();
    let fake = FakeBitbucket::start().await;
    let data = tempfile::tempdir().expect("a data directory");
    let watch = start_watch(data.path());
    let http = client();
    wait_until_listening(&http, &format!("{}/", watch.base)).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let body = json!({"name": format!("c{i}"), "url": fake.url("cloud"), "username": API_TOKEN_EMAIL, "password": API_TOKEN_ALL_SCOPES});
        let reply = send(http.post(format!("{}/connections", watch.base)), Some(body)).await;
        let created: serde_json::Value = serde_json::from_str(&reply.2).unwrap_or_default();
        ids.push(created["id"].as_str().expect("created").to_owned());
    }
    let started = Instant::now();
    let clients = (0..CLIENTS).map(|worker| {
        let (http, base, ids, url) = (http.clone(), watch.base.clone(), ids.clone(), fake.url("cloud"));
        tokio::spawn(async move {
            let mut seen = Vec::new();
            for n in 0..PER_CLIENT {
                let id = &ids[(n + worker) % ids.len()];
                let (what, request, body) = match (n + worker) % 8 {
                    0 => ("page", http.get(format!("{base}/")), None),
                    1 => ("app.js", http.get(format!("{base}/app.js")), None),
                    2 => ("list", http.get(format!("{base}/connections")), None),
                    3 => ("get", http.get(format!("{base}/connections/{id}")), None),
                    4 => ("rename", http.patch(format!("{base}/connections/{id}")), Some(json!({"name": format!("r{worker}-{n}")}))),
                    5 => ("verify", http.post(format!("{base}/connections/{id}/verify")), None),
                    6 => ("browse", http.get(format!("{base}/connections/{id}/workspaces")), None),
                    _ => ("add", http.post(format!("{base}/connections")), Some(json!({"name": format!("a{worker}-{n}"), "url": url, "username": API_TOKEN_EMAIL, "password": "wrong"}))),
                };
                let (status, took, text) = send(request, body).await;
                seen.push((what, status, took, text));
            }
            seen
        })
    });
    let mut all = Vec::new();
    for client in clients {
        all.extend(client.await.expect("a client"));
    }
    let mut latencies: Vec<Duration> = all.iter().map(|seen| seen.2).collect();
    latencies.sort();
    let emulator_errors: Vec<_> = all.iter().filter(|seen| seen.1 >= 500 && !seen.3.contains("\"code\"")).collect();
    println!(
        "{} requests in {:.1} s: p50 {:?}, p99 {:?}, max {:?}; {} answered by the emulator itself with a 5xx, {} over 5 s",
        all.len(),
        started.elapsed().as_secs_f64(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100],
        latencies[latencies.len() - 1],
        emulator_errors.len(),
        all.iter().filter(|seen| seen.2 > Duration::from_secs(5)).count(),
    );
    for (what, status, took, text) in emulator_errors {
        println!("  {what}: {status} after {took:?}: {text}");
    }
}

/// Status, time and body of one request; a transport failure is status 0.
async fn send(request: reqwest::RequestBuilder, body: Option<serde_json::Value>) -> (u16, Duration, String) {
    let request = match body {
        Some(body) => request.header("content-type", "application/json").body(body.to_string()),
        None => request,
    };
    let started = Instant::now();
    match request.send().await {
        Ok(reply) => {
            let status = reply.status().as_u16();
            let text = reply.text().await.unwrap_or_default();
            (status, started.elapsed(), text)
        }
        Err(error) => (0, started.elapsed(), error.to_string()),
    }
}
