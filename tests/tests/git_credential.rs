//! The git credential helper with the real `git`: `git credential fill` and a
//! real clone over smart HTTP (git http-backend behind Basic auth, on the fake
//! Bitbucket), the helper asking the credentials function through Lambda's Invoke
//! API on the local server, as a worker would with `scripts/run`.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use blackbox::fake_bitbucket::*;
use blackbox::local::{build_local_server, cargo, client, repository_root, start_local, wait_until_listening};
use serde_json::{Value, json};

fn git(dir: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("git must be installed")
}

/// A bare repository `acme/api.git` with one commit, as Bitbucket would hold it.
fn bare_repository(root: &Path) {
    let work = root.join("work");
    std::fs::create_dir_all(&work).unwrap();
    for args in [
        vec!["init", "-q", "-b", "main"],
        vec![
            "-c",
            "user.name=J Doe",
            "-c",
            "user.email=jdoe@example.com",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "first",
        ],
    ] {
        assert!(git(&work, &args).status.success());
    }
    std::fs::write(work.join("main.tf"), "terraform {}\n").unwrap();
    assert!(git(&work, &["add", "main.tf"]).status.success());
    let commit = ["-c", "user.name=J Doe", "-c", "user.email=jdoe@example.com", "commit", "-q", "-m", "infra"];
    assert!(git(&work, &commit).status.success());
    std::fs::create_dir_all(root.join("repos/acme")).unwrap();
    let bare = root.join("repos/acme/api.git");
    assert!(git(root, &["clone", "-q", "--bare", work.to_str().unwrap(), bare.to_str().unwrap()]).status.success());
}

fn redact(text: &str) -> String {
    text.replace(API_TOKEN, "<API token>")
}

// git blocks its caller; the fake Bitbucket answering it runs on the other worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_gets_credentials_through_the_helper_and_clones() {
    build_local_server();
    let status = cargo().args(["build", "--bin", "git-credential-bitbucket-connections"]).status().unwrap();
    assert!(status.success());
    let fake = FakeBitbucket::start().await;
    let scratch = tempfile::tempdir().unwrap();
    bare_repository(scratch.path());
    fake.serve_git(&scratch.path().join("repos"));
    let data = tempfile::tempdir().unwrap();
    let local = start_local(data.path());
    let http = client();
    let collection = format!("{}/connections", local.base);
    wait_until_listening(&http, &collection).await;

    let body = json!({"name": "work", "url": fake.url("cloud"), "username": API_TOKEN_EMAIL, "password": API_TOKEN});
    let created = http
        .post(&collection)
        .header("x-dev-user", "alice")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let created: Value = serde_json::from_str(&created.text().await.unwrap()).unwrap();
    let id = created["id"].as_str().unwrap();

    // git finds `git-credential-bitbucket-connections` on PATH, as a worker's image would.
    let bin = repository_root().join("target/debug");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let helper = format!("bitbucket-connections --owner alice --connection {id} --local={}", local.base);
    let host = fake.origin.trim_start_matches("http://").to_owned();
    let home = scratch.path();

    let fill = |request: String| {
        let mut git = Command::new("git")
            .current_dir(home)
            .args(["-c", &format!("credential.helper={helper}"), "credential", "fill"])
            .env("PATH", &path)
            .env("HOME", home)
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        git.stdin.take().unwrap().write_all(request.as_bytes()).unwrap();
        git.wait_with_output().unwrap()
    };
    let filled = fill(format!("protocol=http\nhost={host}\npath=git/acme/api.git\n\n"));
    let answer = String::from_utf8_lossy(&filled.stdout).into_owned();
    assert!(filled.status.success(), "{}", String::from_utf8_lossy(&filled.stderr));
    assert!(answer.contains("username=x-bitbucket-api-token-auth\n"), "{}", redact(&answer));
    assert!(answer.contains(&format!("password={API_TOKEN}\n")));
    println!("$ git -c credential.helper='{helper}' credential fill\n{}", redact(&answer));

    // Another host gets nothing from this helper: git would prompt (here: fail).
    let refused = fill("protocol=https\nhost=evil.example\n\n".to_owned());
    assert!(!String::from_utf8_lossy(&refused.stdout).contains(API_TOKEN), "no secret for another host");

    let url = format!("{}/git/acme/api.git", fake.origin);
    let clone = Command::new("git")
        .current_dir(home)
        .args(["-c", &format!("credential.helper={helper}"), "clone", "-q", &url, "checkout"])
        .env("PATH", &path)
        .env("HOME", home)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .unwrap();
    let transcript = redact(&String::from_utf8_lossy(&clone.stderr));
    assert!(clone.status.success(), "git clone failed: {transcript}");
    assert_eq!(std::fs::read_to_string(home.join("checkout/main.tf")).unwrap(), "terraform {}\n");
    let requests = fake.requests();
    let git_calls: Vec<_> = requests.iter().filter(|r| r.path.starts_with("/git/")).collect();
    assert!(git_calls.iter().any(|r| r.authorized), "the clone authenticated: {git_calls:?}");
    println!("$ git -c credential.helper='{helper}' clone {url} checkout\n{transcript}(exit 0; main.tf checked out)");
}
