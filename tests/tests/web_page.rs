//! The settings page in a real browser: headless Chromium driven by
//! `tests/web/page.test.mjs` (playwright-core), against the local server and the
//! fake Bitbucket, as a person would use it at `scripts/run`'s address. A second
//! server runs the page with OpenID Connect configured against a fake issuer that
//! the script serves, to test the deployed sign-in (PKCE) round trip.
//!
//! Needs `/usr/bin/chromium` and `npm ci --prefix tests/web`; `scripts/test` does both.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use blackbox::fake_bitbucket::*;
use blackbox::local::{
    build_local_server, client, free_port, repository_root, start_local, start_local_with, wait_until_listening,
};
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_settings_page_works_in_a_real_browser() {
    let root = repository_root();
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: scripts/test installs it (apt-get install chromium chromium-driver)"
    );
    assert!(
        root.join("tests/web/node_modules/playwright-core").is_dir()
            && root.join("tests/web/node_modules/axe-core").is_dir(),
        "tests/web/node_modules is missing: run `npm ci --prefix tests/web` (scripts/test does)"
    );
    build_local_server();
    if let Err(failure) = run_suite().await {
        panic!("the browser tests failed.\n{failure}");
    }
}

/// The browser suite against its own two servers; the failures and the servers'
/// last lines when it fails.
async fn run_suite() -> Result<(), String> {
    let root = repository_root();
    let fake = FakeBitbucket::start().await;
    let data = tempfile::tempdir().unwrap();
    let local = start_local(data.path());
    let issuer_port = free_port();
    let issuer = format!("http://127.0.0.1:{issuer_port}");
    let signed_in_data = tempfile::tempdir().unwrap();
    let signed_in = start_local_with(
        signed_in_data.path(),
        &[("OIDC_ISSUER", issuer.as_str()), ("OIDC_CLIENT_ID", "settings-page-test")],
    );
    // "Connect with Bitbucket" against the fake's authorization server; Bitbucket sends
    // the browser back to this server's page.
    let oauth_port = free_port().to_string();
    let oauth_data = tempfile::tempdir().unwrap();
    let callback = format!("http://127.0.0.1:{oauth_port}/");
    let clients = fake.oauth_clients_json();
    let oauth = start_local_with(
        oauth_data.path(),
        &[
            ("PORT", oauth_port.as_str()),
            ("OAUTH_CLIENTS", clients.as_str()),
            ("OAUTH_CALLBACK_URL", callback.as_str()),
        ],
    );
    let client = client();
    wait_until_listening(&client, &format!("{}/", local.base)).await;
    wait_until_listening(&client, &format!("{}/", signed_in.base)).await;
    wait_until_listening(&client, &format!("{}/", oauth.base)).await;

    // The fake's secrets, so the script uses exactly what the fake knows.
    let secrets = json!({
        "email": API_TOKEN_EMAIL,
        "api_token": API_TOKEN,
        "write_only": API_TOKEN_WRITE_ONLY,
        "four_scopes": BRAINBOARD_TOKEN,
        "closed_port": free_port(),
    });
    let arguments = [
        "tests/web/page.test.mjs".to_owned(),
        local.base.clone(),
        fake.url("cloud"),
        "--oidc-base".to_owned(),
        signed_in.base.clone(),
        "--oidc-issuer-port".to_owned(),
        issuer_port.to_string(),
        "--oauth-base".to_owned(),
        oauth.base.clone(),
    ];
    // The fake Bitbucket runs on this runtime: wait for the browser on another thread.
    let (status, printed) = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("node")
            .current_dir(&root)
            .args(arguments)
            .env("FAKE_BITBUCKET", secrets.to_string())
            .env("CHROMIUM", CHROMIUM)
            .stdout(Stdio::piped())
            .spawn()
            .expect("node must be installed");
        // Shown as it comes (io::stdout is not captured by the test harness, unlike
        // println!) and kept for the panic message.
        let mut printed = String::new();
        let mut shown = std::io::stdout();
        for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
            let line = line.unwrap_or_default();
            let _ = writeln!(shown, "{line}");
            printed.push_str(&line);
            printed.push('\n');
        }
        (child.wait().expect("node ends"), printed)
    })
    .await
    .unwrap();
    if status.success() {
        return Ok(());
    }
    Err(format!(
        "screenshots in target/web-screenshots/\n{}\n\nlocal server: {}\n\nlocal server with sign-in: {}\n\nlocal server with OAuth: {}",
        failures(&printed),
        local.log_tail(40),
        signed_in.log_tail(40),
        oauth.log_tail(40)
    ))
}

/// The `not ok` lines and their indented details: repeated in the panic message, so a
/// CI log that keeps only its end still says which scenario failed and why.
fn failures(printed: &str) -> String {
    let mut kept = Vec::new();
    let mut inside = false;
    for line in printed.lines() {
        if line.starts_with("not ok") {
            inside = true;
        } else if !line.starts_with("  ") {
            inside = false;
        }
        if inside {
            kept.push(line);
        }
    }
    kept.join("\n")
}

/// The example events beside the web function (what `scripts/invoke web …` sends)
/// reach their files, as API Gateway delivers them on the unauthenticated routes.
#[tokio::test]
async fn the_web_functions_example_events_are_answered() {
    use connections::handlers::WebHandler;
    use connections::handlers::web::WebConfig;
    let handler = WebHandler::new(&WebConfig::default());
    let dir = repository_root().join("functions/web/events");
    let mut answered = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let request = lambda_http::request::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let response = handler.handle(request).await;
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        answered.push((
            name,
            response.status().as_u16(),
            response.headers()["content-type"].to_str().unwrap().to_owned(),
        ));
    }
    answered.sort();
    assert_eq!(
        answered,
        [
            ("config.json".to_owned(), 200, "application/json".to_owned()),
            ("index.json".to_owned(), 200, "text/html; charset=utf-8".to_owned()),
        ]
    );
}
