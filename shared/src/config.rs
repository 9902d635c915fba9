//! Configuration, read once at start from the environment (or any lookup, in tests).

use std::path::PathBuf;
use std::time::Duration;

use crate::http::Identity;
use crate::oauth::{OauthSource, TokenKeeper};
use crate::secret::Secret;
use crate::store::BrowseRules;
use crate::verify::client::ClientSettings;
use crate::verify::net::NetPolicy;

pub const DEFAULT_MAX_CONNECTIONS: usize = 100;
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024;
/// Per owner: with a 10 s verification deadline, one owner holds at most a few
/// invocations at once.
pub const DEFAULT_VERIFICATIONS_PER_MINUTE: u32 = 20;
/// One page of a picker, however many calls it takes to Bitbucket.
pub const DEFAULT_BROWSE_DEADLINE: Duration = Duration::from_secs(5);

/// What one owner's browsing may hold: `slots` pages at once, each for at most the
/// page's deadline and a margin for the writes around it.
pub fn browse_rules(slots: usize, deadline: Duration) -> BrowseRules {
    let hold_ms = i64::try_from(deadline.as_millis()).unwrap_or(i64::MAX / 2) + 5_000;
    BrowseRules { slots, hold_ms, ..BrowseRules::default() }
}

/// Where connections and secrets live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// DynamoDB table + KMS key (deployed). `key_id` is absent for functions
    /// that never touch secrets (list, delete).
    /// `open_at_start`: open the connections the first request uses while the function
    /// starts (`runtime::Open`); `CONNECTIONS_OPEN_AT_START=0` leaves them to that request
    /// (the benchmark measures start-up both ways).
    Aws { table: String, key_id: Option<String>, open_at_start: bool },
    /// SQLite file + AES-GCM key file under `dir` (a laptop).
    Embedded { dir: PathBuf },
}

/// What every handler needs besides its ports.
#[derive(Clone, Debug)]
pub struct Settings {
    pub identity: Identity,
    pub max_connections_per_owner: usize,
    pub max_body_bytes: usize,
    /// Checks against Bitbucket (add, edit, re-verify) per owner per minute.
    pub verifications_per_minute: u32,
    pub bitbucket: ClientSettings,
    /// One page of a picker (`BROWSE_DEADLINE_MS`, 5,000).
    pub browse_deadline: Duration,
    /// Pages one owner may have in flight (`BROWSE_SLOTS_PER_OWNER`, 4) and the rest
    /// for a server that keeps timing out.
    pub browse: BrowseRules,
    /// "Connect with Bitbucket": the registered OAuth clients (`OAUTH_CLIENTS`), read
    /// on first use.
    pub oauth: OauthSource,
    /// Where Bitbucket sends the browser back (`OAUTH_CALLBACK_URL`): the page's
    /// address, exactly as registered as the consumer's callback URL.
    pub oauth_callback_url: Option<String>,
}

impl Settings {
    /// The keeper a function's handler opens secrets with (see `oauth::keeper`).
    pub fn token_keeper(
        &self,
        store: std::sync::Arc<dyn crate::store::ConnectionStore>,
        sealer: std::sync::Arc<dyn crate::seal::Sealer>,
    ) -> TokenKeeper {
        TokenKeeper::new(store, sealer, &self.bitbucket, &self.oauth)
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            identity: Identity::Authorizer,
            max_connections_per_owner: DEFAULT_MAX_CONNECTIONS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            verifications_per_minute: DEFAULT_VERIFICATIONS_PER_MINUTE,
            bitbucket: ClientSettings::default(),
            browse_deadline: DEFAULT_BROWSE_DEADLINE,
            browse: browse_rules(BrowseRules::default().slots, DEFAULT_BROWSE_DEADLINE),
            oauth: OauthSource::Off,
            oauth_callback_url: None,
        }
    }
}

/// The recheck function's bounds.
#[derive(Clone, Debug)]
pub struct RecheckSettings {
    /// Re-verify connections not checked for this long (`RECHECK_AFTER_HOURS`, 24).
    pub interval: Duration,
    /// Connections one invocation looks at in parallel: a whole run without a queue
    /// (`RECHECK_CONCURRENCY`, 8), or one batch of queued work.
    pub concurrency: usize,
    /// Connections of one owner a planner run queues at most; the rest wait for the
    /// next run (`RECHECK_OWNER_SHARE`, 200), so no owner's thousands take a run.
    pub owner_share: usize,
    /// How long a queued connection is held off the schedule for its worker; if no
    /// worker checks it by then, it is due again.
    pub lease: Duration,
    /// Due connections read per query page.
    pub page_size: usize,
    /// A host that answered 429 without `Retry-After` is left alone this long.
    pub rate_limit_pause: Duration,
    /// A connection Bitbucket could not answer for, or whose change is still to
    /// announce, is looked at again no sooner than this: by a later run, never
    /// by the one that put it back.
    pub retry_after: Duration,
}

impl Default for RecheckSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(24 * 60 * 60),
            concurrency: 8,
            owner_share: 200,
            // The queue's visibility timeout: a message not deleted by then is delivered again.
            lease: Duration::from_secs(30 * 60),
            page_size: 100,
            rate_limit_pause: Duration::from_secs(60),
            retry_after: Duration::from_secs(60),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub backend: Backend,
    pub settings: Settings,
    pub recheck: RecheckSettings,
    /// EventBridge bus for status events (`EVENT_BUS_NAME`; locally they are logged).
    pub event_bus: Option<String>,
    /// The recheck's work queue (`RECHECK_QUEUE_URL`): with one, a scheduled run plans
    /// and queued batches are checked by as many workers as the queue's event source
    /// mapping allows; without one, a run checks everything itself.
    pub recheck_queue: Option<String>,
}

impl Config {
    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(|key| std::env::var(key).ok().filter(|v| !v.is_empty()))
    }

    /// `lookup` answers one variable; tests pass a map instead of touching the process env.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let in_lambda = in_lambda(&lookup);
        let backend = match lookup("CONNECTIONS_BACKEND").as_deref() {
            Some("aws") => Backend::Aws {
                table: lookup("CONNECTIONS_TABLE").ok_or("CONNECTIONS_TABLE must name the DynamoDB table")?,
                key_id: lookup("CONNECTIONS_KEY_ID"),
                open_at_start: !matches!(lookup("CONNECTIONS_OPEN_AT_START").as_deref(), Some("0" | "false")),
            },
            Some("embedded") | None if in_lambda => {
                return Err("refusing the embedded backend inside AWS Lambda: its disk is ephemeral and data would be lost. Set CONNECTIONS_BACKEND=aws with CONNECTIONS_TABLE and CONNECTIONS_KEY_ID.".into());
            }
            Some("embedded") | None => Backend::Embedded {
                dir: lookup("CONNECTIONS_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".local")),
            },
            Some(other) => return Err(format!("CONNECTIONS_BACKEND must be 'aws' or 'embedded', not '{other}'")),
        };
        let local_mode = lookup("CONNECTIONS_LOCAL_MODE").is_some_and(|v| v == "1" || v == "true");
        if local_mode && in_lambda {
            return Err(
                "CONNECTIONS_LOCAL_MODE must not be set inside AWS Lambda: it would let callers choose their identity."
                    .into(),
            );
        }
        let number = |key: &str, default: u64| -> Result<u64, String> {
            lookup(key).map_or(Ok(default), |v| v.parse().map_err(|_| format!("{key} must be a whole number")))
        };
        let mut bitbucket = ClientSettings {
            policy: NetPolicy::parse(&lookup("BITBUCKET_ALLOWED_PRIVATE").unwrap_or_default())
                .map_err(|e| format!("BITBUCKET_ALLOWED_PRIVATE: {e}"))?
                .with_plain_http(&lookup("BITBUCKET_ALLOWED_HTTP").unwrap_or_default())
                .map_err(|e| format!("BITBUCKET_ALLOWED_HTTP: {e}"))?,
            connect_timeout: Duration::from_millis(number("BITBUCKET_CONNECT_TIMEOUT_MS", 3_000)?),
            request_timeout: Duration::from_millis(number("BITBUCKET_TIMEOUT_MS", 8_000)?),
            deadline: Duration::from_millis(number("BITBUCKET_DEADLINE_MS", 10_000)?),
            extra_roots_pem: Vec::new(),
            static_hosts: Vec::new(),
        };
        if let Some(path) = lookup("BITBUCKET_CA_BUNDLE") {
            let pem = std::fs::read(&path).map_err(|e| format!("BITBUCKET_CA_BUNDLE {path}: {e}"))?;
            bitbucket.extra_roots_pem.push(pem);
        }
        let browse_deadline = Duration::from_millis(number("BROWSE_DEADLINE_MS", 5_000)?.clamp(500, 20_000));
        let settings = Settings {
            identity: if local_mode { Identity::LocalDevelopment } else { Identity::Authorizer },
            max_connections_per_owner: usize::try_from(number(
                "MAX_CONNECTIONS_PER_OWNER",
                DEFAULT_MAX_CONNECTIONS as u64,
            )?)
            .map_err(|e| e.to_string())?,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            verifications_per_minute: u32::try_from(number(
                "VERIFICATIONS_PER_MINUTE",
                u64::from(DEFAULT_VERIFICATIONS_PER_MINUTE),
            )?)
            .map_err(|e| e.to_string())?,
            bitbucket,
            browse_deadline,
            browse: browse_rules(
                usize::try_from(number("BROWSE_SLOTS_PER_OWNER", 4)?.clamp(1, 64)).unwrap_or(4),
                browse_deadline,
            ),
            oauth: match (lookup("OAUTH_CLIENTS"), lookup("OAUTH_CLIENTS_SECRET_ARN")) {
                (Some(json), _) => OauthSource::Inline(Secret::new(json)),
                (None, Some(arn)) => OauthSource::SecretsManager(arn),
                (None, None) => OauthSource::Off,
            },
            oauth_callback_url: lookup("OAUTH_CALLBACK_URL"),
        };
        let recheck = RecheckSettings {
            interval: Duration::from_secs(number("RECHECK_AFTER_HOURS", 24)?.clamp(1, 8760) * 3600),
            concurrency: usize::try_from(number("RECHECK_CONCURRENCY", 8)?.clamp(1, 64)).unwrap_or(8),
            owner_share: usize::try_from(number("RECHECK_OWNER_SHARE", 200)?.clamp(1, 1_000_000)).unwrap_or(200),
            ..RecheckSettings::default()
        };
        Ok(Self {
            backend,
            settings,
            recheck,
            event_bus: lookup("EVENT_BUS_NAME"),
            recheck_queue: lookup("RECHECK_QUEUE_URL"),
        })
    }
}

/// Whether this process runs inside real AWS Lambda. OS-only runtimes
/// (`provided.al2023`) do not set `AWS_EXECUTION_ENV`, but every runtime sets
/// `LAMBDA_TASK_ROOT` and `AWS_LAMBDA_INITIALIZATION_TYPE`; `cargo lambda watch`
/// sets neither.
fn in_lambda(lookup: &impl Fn(&str) -> Option<String>) -> bool {
    lookup("LAMBDA_TASK_ROOT").is_some()
        || lookup("AWS_LAMBDA_INITIALIZATION_TYPE").is_some()
        || lookup("AWS_EXECUTION_ENV").is_some_and(|v| v.starts_with("AWS_Lambda_"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        Config::from_lookup(|key| map.get(key).cloned())
    }

    #[test]
    fn embedded_is_the_local_default() {
        let config = config(&[]).unwrap();
        assert_eq!(config.backend, Backend::Embedded { dir: PathBuf::from(".local") });
        assert_eq!(config.settings.identity, Identity::Authorizer);
    }

    #[test]
    fn lambda_refuses_embedded_and_local_identity() {
        let lambda = ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023");
        assert!(config(&[lambda]).unwrap_err().contains("ephemeral"));
        assert!(config(&[lambda, ("CONNECTIONS_BACKEND", "embedded")]).is_err());
        let aws = [lambda, ("CONNECTIONS_BACKEND", "aws"), ("CONNECTIONS_TABLE", "t")];
        assert!(config(&aws).is_ok());
        assert!(config(&[aws[0], aws[1], aws[2], ("CONNECTIONS_LOCAL_MODE", "1")]).is_err());
    }

    #[test]
    fn os_only_runtimes_are_recognised_as_lambda() {
        for marker in [("LAMBDA_TASK_ROOT", "/var/task"), ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")] {
            assert!(config(&[marker]).unwrap_err().contains("ephemeral"), "{marker:?}");
            let aws = [marker, ("CONNECTIONS_BACKEND", "aws"), ("CONNECTIONS_TABLE", "t")];
            assert!(config(&[aws[0], aws[1], aws[2], ("CONNECTIONS_LOCAL_MODE", "1")]).is_err(), "{marker:?}");
        }
    }

    #[test]
    fn aws_backend_needs_a_table() {
        assert!(config(&[("CONNECTIONS_BACKEND", "aws")]).is_err());
        assert!(config(&[("CONNECTIONS_BACKEND", "dynamo")]).is_err());
    }
}
