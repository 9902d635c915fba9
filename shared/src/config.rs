//! Configuration, read once at start from the environment (or any lookup, in tests).

use std::path::PathBuf;
use std::time::Duration;

use crate::http::Identity;
use crate::verify::client::ClientSettings;
use crate::verify::net::NetPolicy;

pub const DEFAULT_MAX_CONNECTIONS: usize = 100;
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024;

/// Where connections and secrets live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// DynamoDB table + KMS key (deployed). `key_id` is absent for functions
    /// that never touch secrets (list, delete).
    Aws { table: String, key_id: Option<String> },
    /// SQLite file + AES-GCM key file under `dir` (a laptop).
    Embedded { dir: PathBuf },
}

/// What every handler needs besides its ports.
#[derive(Clone, Debug)]
pub struct Settings {
    pub identity: Identity,
    pub max_connections_per_owner: usize,
    pub max_body_bytes: usize,
    pub bitbucket: ClientSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            identity: Identity::Authorizer,
            max_connections_per_owner: DEFAULT_MAX_CONNECTIONS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            bitbucket: ClientSettings::default(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub backend: Backend,
    pub settings: Settings,
}

impl Config {
    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(|key| std::env::var(key).ok().filter(|v| !v.is_empty()))
    }

    /// `lookup` answers one variable; tests pass a map instead of touching the process env.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        // Lambda sets AWS_EXECUTION_ENV; cargo lambda's emulator does not.
        let in_lambda = lookup("AWS_EXECUTION_ENV").is_some_and(|v| v.starts_with("AWS_Lambda_"));
        let backend = match lookup("CONNECTIONS_BACKEND").as_deref() {
            Some("aws") => Backend::Aws {
                table: lookup("CONNECTIONS_TABLE").ok_or("CONNECTIONS_TABLE must name the DynamoDB table")?,
                key_id: lookup("CONNECTIONS_KEY_ID"),
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
                .map_err(|e| format!("BITBUCKET_ALLOWED_PRIVATE: {e}"))?,
            connect_timeout: Duration::from_millis(number("BITBUCKET_CONNECT_TIMEOUT_MS", 3_000)?),
            request_timeout: Duration::from_millis(number("BITBUCKET_TIMEOUT_MS", 8_000)?),
            extra_roots_pem: Vec::new(),
            static_hosts: Vec::new(),
        };
        if let Some(path) = lookup("BITBUCKET_CA_BUNDLE") {
            let pem = std::fs::read(&path).map_err(|e| format!("BITBUCKET_CA_BUNDLE {path}: {e}"))?;
            bitbucket.extra_roots_pem.push(pem);
        }
        let settings = Settings {
            identity: if local_mode { Identity::LocalDevelopment } else { Identity::Authorizer },
            max_connections_per_owner: usize::try_from(number(
                "MAX_CONNECTIONS_PER_OWNER",
                DEFAULT_MAX_CONNECTIONS as u64,
            )?)
            .map_err(|e| e.to_string())?,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            bitbucket,
        };
        Ok(Self { backend, settings })
    }
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
    fn aws_backend_needs_a_table() {
        assert!(config(&[("CONNECTIONS_BACKEND", "aws")]).is_err());
        assert!(config(&[("CONNECTIONS_BACKEND", "dynamo")]).is_err());
    }
}
