//! Schemathesis against the service as `scripts/run` serves it (`connections-local`,
//! the routes of `connections::routes`), with the fake Bitbucket in this process. Every check that applies locally, all four phases (examples, coverage,
//! fuzzing, and stateful sequences along the document's links), a fixed seed and a
//! bounded number of examples, as user `alice` (`x-dev-user`) with `bob` as the peer who
//! must not see her connections: tests/schemathesis/schemathesis.toml says what runs and
//! why anything is left out; tests/schemathesis/hooks.py points generated requests at the
//! fake. The totals per check are printed; every exchange is kept in the cassette.
//!
//! Needs `.venv/schemathesis` (the pin is `SCHEMATHESIS_PIN` in scripts/lib/tools.sh);
//! `scripts/test` installs it.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;

use blackbox::fake_bitbucket::*;
use blackbox::local::{build_local_server, client, repository_root, start_local_with, wait_until_listening};

const SCHEMATHESIS: &str = ".venv/schemathesis/bin/schemathesis";
const CONFIG: &str = "tests/schemathesis/schemathesis.toml";
/// Every request and response of the run, with each check's verdict (secrets filtered).
const CASSETTE: &str = "target/schemathesis/cassette.yaml";

/// Checks the configuration leaves enabled; each must have judged responses.
const CHECKS: [&str; 13] = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
    "missing_required_header",
    "allow_header_conformance",
    "use_after_free",
    "ensure_resource_availability",
    "object_level_authorization",
    "max_response_time",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_wrong() {
    let root = repository_root();
    assert!(
        root.join(SCHEMATHESIS).exists(),
        "{SCHEMATHESIS} is missing: scripts/test installs it (ensure_venv schemathesis \"$SCHEMATHESIS_PIN\")"
    );
    let begun = std::time::Instant::now();
    build_local_server();
    let fake = FakeBitbucket::start().await;
    let data = tempfile::tempdir().unwrap();
    // Schemathesis checks credentials far more often than a person: lift the per-owner limit.
    let local = start_local_with(data.path(), &[("VERIFICATIONS_PER_MINUTE", "100000")]);
    let client = client();
    wait_until_listening(&client, &format!("{}/connections", local.base)).await;
    // The emulator starts each function on its first request: do that before the clock runs.
    let unknown = format!("{}/connections/01934a6e-0000-7000-8000-000000000000", local.base);
    for request in [
        client.get(format!("{}/connections", local.base)),
        client.post(format!("{}/connections", local.base)).header("content-type", "application/json").body("{}"),
        client.patch(&unknown).header("content-type", "application/json").body("{}"),
        client.delete(&unknown),
        client.get(format!("{unknown}/workspaces")),
        client.get(format!("{}/", local.base)),
    ] {
        let status = request.header("x-dev-user", "warm-up").send().await.expect("the service answers").status();
        assert!(status.is_success() || status.is_client_error(), "warm-up answered {status}");
    }

    let ready = begun.elapsed();
    let cassette = root.join(CASSETTE);
    let _ = std::fs::remove_file(&cassette);
    let arguments = [
        "--config-file",
        CONFIG,
        "run",
        "infra/openapi.yaml",
        "--url",
        &local.base,
        "--no-color",
        "--report",
        "vcr",
        "--report-vcr-path",
        CASSETTE,
    ]
    .map(str::to_owned);
    let fake_url = fake.url("cloud");
    let started = std::time::Instant::now();
    // The fake Bitbucket runs on this runtime: wait for Schemathesis on another thread.
    let status = tokio::task::spawn_blocking(move || {
        Command::new(SCHEMATHESIS)
            .current_dir(repository_root())
            .args(arguments)
            .env("FAKE_BITBUCKET_URL", fake_url)
            .env("FAKE_BITBUCKET_EMAIL", API_TOKEN_EMAIL)
            .env("FAKE_BITBUCKET_TOKEN", API_TOKEN_ALL_SCOPES)
            // Nothing written into the repository: no __pycache__ beside the hooks, and
            // Hypothesis's caches under target/.
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("HYPOTHESIS_STORAGE_DIRECTORY", repository_root().join("target/schemathesis/hypothesis"))
            .status()
            .expect("schemathesis runs")
    })
    .await
    .unwrap();
    let elapsed = started.elapsed();

    // Its summary is above; the totals per check come from the cassette.
    let totals = std::fs::read_to_string(&cassette).map(|text| totals(&text)).unwrap_or_default();
    let mut summary = format!(
        "service ready in {:.0} s, Schemathesis took {:.0} s; checks (passed / failed):\n",
        ready.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    for (check, (passed, failed)) in &totals.checks {
        summary.push_str(&format!("  {check:<30} {passed:>5} / {failed}\n"));
    }
    summary.push_str("responses by operation and status:\n");
    for (operation, count) in &totals.statuses {
        summary.push_str(&format!("  {operation:<75} {count:>5}\n"));
    }
    // Straight to stdout, past the test harness's capture, so it shows on success too.
    std::io::stdout().lock().write_all(summary.as_bytes()).unwrap();

    assert!(status.success(), "Schemathesis found failures (its report is above; every exchange is in {CASSETTE})");
    for check in CHECKS {
        assert!(totals.checks.get(check).is_some_and(|(passed, _)| *passed > 0), "{check} judged nothing");
    }
    // The hooks make creates succeed, so the stateful phase has real connections to follow.
    for operation in [
        "POST /connections 201",
        "GET /connections 200",
        "GET /connections/{id} 200",
        "PATCH /connections/{id} 200",
        "DELETE /connections/{id} 204",
        "POST /connections/{id}/verify 200",
        "GET /connections/{id}/workspaces 200",
        "GET /connections/{id}/repositories 200",
        "GET /connections/{id}/repositories/{workspace}/{repo}/branches 200",
    ] {
        assert!(totals.statuses.contains_key(operation), "no {operation} in the run");
    }
    drop(local);
}

#[derive(Default)]
struct Totals {
    /// Check → (passed, failed).
    checks: BTreeMap<String, (usize, usize)>,
    /// "METHOD /path/template STATUS" → responses.
    statuses: BTreeMap<String, usize>,
}

#[derive(serde::Deserialize)]
struct Cassette {
    http_interactions: Vec<Interaction>,
}

#[derive(serde::Deserialize)]
struct Interaction {
    #[serde(default)]
    checks: Vec<CheckResult>,
    request: Request,
    response: Option<Response>,
}

#[derive(serde::Deserialize)]
struct CheckResult {
    name: String,
    status: String,
}

#[derive(serde::Deserialize)]
struct Request {
    method: String,
    uri: String,
}

#[derive(serde::Deserialize)]
struct Response {
    status: Status,
}

#[derive(serde::Deserialize)]
struct Status {
    code: String,
}

fn totals(cassette: &str) -> Totals {
    let cassette: Cassette = serde_yaml_ng::from_str(cassette).expect("a VCR cassette");
    let mut totals = Totals::default();
    for interaction in cassette.http_interactions {
        for check in interaction.checks {
            let entry = totals.checks.entry(check.name).or_default();
            match check.status.as_str() {
                "SUCCESS" => entry.0 += 1,
                _ => entry.1 += 1,
            }
        }
        if let Some(response) = interaction.response {
            let operation = template(&interaction.request.uri);
            *totals
                .statuses
                .entry(format!("{} {operation} {}", interaction.request.method, response.status.code))
                .or_default() += 1;
        }
    }
    totals
}

/// The document's path template a request URI was sent to.
fn template(uri: &str) -> String {
    let path = uri.split("://").nth(1).and_then(|rest| rest.find('/').map(|i| &rest[i..])).unwrap_or("/");
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["connections"] => "/connections".into(),
        ["connections", _] => "/connections/{id}".into(),
        ["connections", _, "repositories", _, _, "branches"] => {
            "/connections/{id}/repositories/{workspace}/{repo}/branches".into()
        }
        ["connections", _, rest] => format!("/connections/{{id}}/{rest}"),
        _ => path.to_owned(),
    }
}
