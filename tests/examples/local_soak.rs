//! Both local servers under the browser suite's mix, in one run: `connections-local`
//! (what `scripts/run` starts) and, as the baseline, `cargo lambda watch`, each with
//! the fake Bitbucket and 2,400 requests from 8 clients across every HTTP function
//! (the page and its script, list, get, rename, re-verify, browse, add). Prints
//! latency and every answer that did not come whole from a function (a server's own
//! 500s, cut bodies, stalls).
//!
//!     PATH="$PWD/.venv/lambda/bin:$PATH" cargo run -p blackbox --example local_soak

use std::time::{Duration, Instant};

use blackbox::fake_bitbucket::*;
use blackbox::local::{
    Running, build_functions, build_local_server, client, start_local_with, start_watch_with, wait_until_listening,
};
use serde_json::json;

const CLIENTS: usize = 8;
const PER_CLIENT: usize = 300;
/// Every request here may verify; the per-owner limit has its own tests.
const UNLIMITED: [(&str, &str); 1] = [("VERIFICATIONS_PER_MINUTE", "100000")];

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    build_local_server();
    build_functions();
    let data = tempfile::tempdir().expect("a data directory");
    for server in ["local", "watch"] {
        std::fs::create_dir(data.path().join(server)).expect("a data directory");
    }
    println!("connections-local (scripts/run):");
    soak(start_local_with(&data.path().join("local"), &UNLIMITED)).await;
    println!("cargo lambda watch:");
    soak(start_watch_with(&data.path().join("watch"), &UNLIMITED)).await;
}

async fn soak(watch: Running) {
    let fake = FakeBitbucket::start().await;
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
    let script = all.iter().filter(|seen| seen.0 == "app.js").map(|seen| seen.3.len()).max().unwrap_or_default();
    let emulator_errors: Vec<_> = all
        .iter()
        .filter(|seen| {
            (seen.1 >= 500 && !seen.3.contains("\"code\""))
                || seen.1 == 0
                || (seen.0 == "app.js" && seen.3.len() != script)
        })
        .collect();
    println!(
        "  {} requests in {:.1} s: p50 {:?}, p99 {:?}, max {:?}; {} not answered whole by a function, {} over 5 s",
        all.len(),
        started.elapsed().as_secs_f64(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100],
        latencies[latencies.len() - 1],
        emulator_errors.len(),
        all.iter().filter(|seen| seen.2 > Duration::from_secs(5)).count(),
    );
    for (what, status, took, text) in emulator_errors {
        let start: String = text.chars().take(160).collect();
        println!("    {what}: {status} after {took:?}, {} bytes: {start}", text.len());
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
