//! The service as a newcomer runs it, for suites that drive it over real HTTP:
//! `connections-local` (what `scripts/run` starts: every route and Lambda's Invoke
//! API in one process), and `cargo lambda watch` from the repository root with the
//! router in the workspace metadata.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A local server running as a child process, ended when dropped.
pub struct Running {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub base: String,
    log: PathBuf,
}

impl Running {
    /// The last lines the server and its functions printed.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        format!("{} (last {lines} lines):\n{}", self.log.display(), all[all.len().saturating_sub(lines)..].join("\n"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // cargo lambda runs each function as a child process: end the whole group.
        let _ = Command::new("kill").arg("--").arg(format!("-{}", self.child.id())).status();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The functions the router in the workspace `Cargo.toml` names.
pub fn routed_functions() -> Vec<String> {
    let manifest = std::fs::read_to_string(repository_root().join("Cargo.toml")).expect("the workspace Cargo.toml");
    let after = manifest.split("[workspace.metadata.lambda.watch.router]").nth(1).unwrap_or_default();
    let router = after.split("\n[").next().unwrap_or_default();
    let mut functions: Vec<String> =
        router.split("function = \"").skip(1).filter_map(|rest| rest.split('"').next()).map(str::to_owned).collect();
    functions.sort();
    functions.dedup();
    functions
}

/// A `cargo` command without the variables cargo set for this test binary
/// (`CARGO_MANIFEST_DIR=…/tests`, `CARGO_PKG_NAME=blackbox`, …). Build scripts such as
/// ring's ask to rerun when those change, so inheriting them rebuilt ring, rustls and
/// everything above them on every nested build and again on the next `cargo test`.
pub fn cargo() -> Command {
    let mut command = Command::new("cargo");
    command.current_dir(repository_root());
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let set_for_tests = name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_")
            || name.starts_with("CARGO_CFG_")
            || matches!(
                name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "OUT_DIR"
            );
        if set_for_tests {
            command.env_remove(name);
        }
    }
    command
}

/// Builds `connections-local` as `scripts/run` does (`cargo build -p local-server`).
pub fn build_local_server() {
    let status = cargo().args(["build", "-p", "local-server"]).status().expect("cargo");
    assert!(status.success(), "connections-local must build");
}

/// Starts `connections-local` (built by `build_local_server`) on a free loopback port
/// with the embedded store in `data_dir`, Bitbucket allowed on loopback over plain
/// HTTP (the fake), and `extra` environment variables.
/// `extra` may name the `PORT` (when another setting must know the address first).
pub fn start_local_with(data_dir: &Path, extra: &[(&str, &str)]) -> Running {
    use std::os::unix::process::CommandExt;
    let port =
        extra.iter().find(|(key, _)| *key == "PORT").and_then(|(_, port)| port.parse().ok()).unwrap_or_else(free_port);
    let (log_path, log) = log_file("local", port);
    let binary = repository_root().join("target/debug/connections-local");
    let child = Command::new(&binary)
        .env("PORT", port.to_string())
        .env("CONNECTIONS_DATA_DIR", data_dir)
        .env("BITBUCKET_ALLOWED_PRIVATE", "127.0.0.0/8")
        .env("BITBUCKET_ALLOWED_HTTP", "127.0.0.1")
        .envs(extra.iter().copied())
        .stdout(log.try_clone().expect("the server log"))
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e} (build_local_server builds it)", binary.display()));
    Running { child, base: format!("http://127.0.0.1:{port}"), log: log_path }
}

pub fn start_local(data_dir: &Path) -> Running {
    start_local_with(data_dir, &[])
}

/// What a server and its functions print, for a failing test to show (`Running::log_tail`).
fn log_file(kind: &str, port: u16) -> (PathBuf, std::fs::File) {
    let path = repository_root().join(format!("target/local-logs/{kind}-{port}.log"));
    std::fs::create_dir_all(path.parent().expect("a directory")).expect("target/local-logs");
    let file = std::fs::File::create(&path).expect("the server log");
    (path, file)
}

/// `cargo lambda watch` builds each function with `cargo run --bin <fn>` and the
/// features in the workspace's `lambda.watch` metadata (the embedded backend), a
/// feature set that differs from the test build's. Building the routed binaries the
/// same way up front keeps that compile out of request timeouts.
pub fn build_functions() {
    let mut command = cargo();
    command.args(["build", "--features", "connections/embedded"]);
    for function in routed_functions() {
        command.args(["--bin", &function]);
    }
    let status = command.status().expect("cargo");
    assert!(status.success(), "the routed functions must build");
}

/// Starts `cargo lambda watch` on a free loopback port with the embedded store in
/// `data_dir`, Bitbucket allowed on loopback over plain HTTP (the fake), and `extra`
/// environment variables for the functions.
pub fn start_watch_with(data_dir: &Path, extra: &[(&str, &str)]) -> Running {
    use std::os::unix::process::CommandExt;
    // Without it, `cargo lambda` exits at once and the test would wait out its start-up time.
    let installed = cargo().args(["lambda", "--version"]).output().is_ok_and(|o| o.status.success());
    assert!(installed, "cargo lambda is not on PATH: scripts/test installs it into .venv/lambda and puts it there");
    let port = free_port();
    let mut env = format!(
        "CONNECTIONS_DATA_DIR={},BITBUCKET_ALLOWED_PRIVATE=127.0.0.0/8,BITBUCKET_ALLOWED_HTTP=127.0.0.1",
        data_dir.display()
    );
    for (name, value) in extra {
        assert!(!value.contains(','), "cargo lambda splits --env-var at commas: {name}={value}");
        env.push_str(&format!(",{name}={value}"));
    }
    let (log_path, log) = log_file("watch", port);
    let child = cargo()
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
        .arg(env)
        .stdout(log.try_clone().expect("the watch log"))
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("cargo lambda must be installed (scripts/test installs it into .venv/lambda)");
    Running { child, base: format!("http://127.0.0.1:{port}"), log: log_path }
}

pub fn start_watch(data_dir: &Path) -> Running {
    start_watch_with(data_dir, &[])
}

/// A client for talking to the local service (the workspace builds reqwest
/// without a default crypto provider; this plain client needs one).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().timeout(Duration::from_secs(300)).build().unwrap()
}

/// Waits until the server answers at all (the first request to each function
/// then compiles or starts it).
pub async fn wait_until_listening(client: &reqwest::Client, url: &str) {
    let started = Instant::now();
    while client.get(url).send().await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(300), "the local server did not start");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
