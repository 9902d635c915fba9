//! Captures every log line the service writes, through the production filter
//! at its most verbose, so tests can search them for secrets.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

static CAPTURE: OnceLock<Buffer> = OnceLock::new();

/// Installs the capture once per test binary; later calls are no-ops.
pub fn capture() {
    CAPTURE.get_or_init(|| {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::level_filters::LevelFilter::TRACE)
            .with_writer(move || writer.clone())
            .finish()
            .with(connections::runtime::log_filter("trace"))
            .init();
        buffer
    });
}

/// Everything logged so far by every test in this binary.
pub fn captured() -> String {
    CAPTURE.get().map(|b| String::from_utf8_lossy(&b.0.lock().unwrap()).into_owned()).unwrap_or_default()
}

/// Every secret the fake Bitbucket knows: none may ever appear in a log line.
pub const KNOWN_SECRETS: &[&str] = &[
    crate::fake_bitbucket::APP_PASSWORD,
    crate::fake_bitbucket::APP_PASSWORD_READ_ONLY,
    crate::fake_bitbucket::API_TOKEN,
    crate::fake_bitbucket::API_TOKEN_NO_ACCOUNT_SCOPE,
    crate::fake_bitbucket::API_TOKEN_WRITE_ONLY,
    crate::fake_bitbucket::OTHER_TOKEN,
    crate::fake_bitbucket::DC_TOKEN,
    crate::fake_bitbucket::DC_TOKEN_READ_ONLY,
    crate::fake_bitbucket::DC_TOKEN_OF_BOB,
    crate::fake_bitbucket::BRAINBOARD_TOKEN,
    crate::fake_bitbucket::REPO_ACCESS_TOKEN,
    crate::fake_bitbucket::REPO_ACCESS_TOKEN_READ_ONLY,
    crate::fake_bitbucket::PROJECT_ACCESS_TOKEN,
    crate::fake_bitbucket::WORKSPACE_ACCESS_TOKEN,
    crate::fake_bitbucket::DC_PROJECT_TOKEN,
    crate::fake_bitbucket::DC_REPO_TOKEN,
    crate::fake_bitbucket::API_TOKEN_ALL_SCOPES,
];

/// Checks, when a test ends, that nothing logged so far holds a known secret.
pub struct SecretsStayOutOfLogs;

impl Drop for SecretsStayOutOfLogs {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let logs = captured();
        for secret in KNOWN_SECRETS {
            assert!(!logs.contains(secret), "a log line leaks a secret");
        }
    }
}

/// Captures logs and returns the guard that checks them at the end of the test.
pub fn guard() -> SecretsStayOutOfLogs {
    capture();
    SecretsStayOutOfLogs
}
