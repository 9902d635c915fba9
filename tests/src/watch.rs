//! The service as a newcomer runs it: `cargo lambda watch` from the repository root
//! (what `scripts/run` starts), serving the real routes through the router in the
//! workspace metadata, for suites that drive it over real HTTP.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub struct Watch {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub base: String,
    log: PathBuf,
}

impl Watch {
    /// The last lines watch and its functions printed.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        format!("{} (last {lines} lines):\n{}", self.log.display(), all[all.len().saturating_sub(lines)..].join("\n"))
    }
}

impl Drop for Watch {
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
pub fn start_watch_with(data_dir: &Path, extra: &[(&str, &str)]) -> Watch {
    use std::os::unix::process::CommandExt;
    let port = free_port();
    let mut env = format!(
        "CONNECTIONS_DATA_DIR={},BITBUCKET_ALLOWED_PRIVATE=127.0.0.0/8,BITBUCKET_ALLOWED_HTTP=127.0.0.1",
        data_dir.display()
    );
    for (name, value) in extra {
        assert!(!value.contains(','), "cargo lambda splits --env-var at commas: {name}={value}");
        env.push_str(&format!(",{name}={value}"));
    }
    // What watch and the functions print, for a failing test to show (`Watch::log_tail`).
    let log_path = repository_root().join(format!("target/watch-logs/{port}.log"));
    std::fs::create_dir_all(log_path.parent().expect("a directory")).expect("target/watch-logs");
    let log = std::fs::File::create(&log_path).expect("the watch log");
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
    Watch { child, base: format!("http://127.0.0.1:{port}"), log: log_path }
}

pub fn start_watch(data_dir: &Path) -> Watch {
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
        assert!(started.elapsed() < Duration::from_secs(300), "cargo lambda watch did not start");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
