//! "Connect with Bitbucket" round trips in flight: one item per started flow,
//! under the owner who started it and keyed by a hash of its `state`, taken (read
//! and marked taken in one conditional call) by the callback. A callback from another
//! user looks under their own key and finds nothing: same-user by construction.

mod dynamo;
#[cfg(feature = "embedded")]
mod embedded;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::domain::Owner;
use crate::secret::Secret;
use crate::store::StoreError;

/// How long a started flow may wait for its callback.
pub const FLOW_SECONDS: i64 = 10 * 60;

/// One started flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    /// The API base of the client it was started for, as stored.
    pub server: String,
    /// The PKCE verifier: useless without the code and the client's secret.
    pub verifier: Secret,
    /// The name the connection will have.
    pub name: String,
    /// Set when the flow reconnects an existing connection (keeping its id).
    pub reconnect: Option<String>,
    /// Unix seconds; a flow is not taken after it.
    pub expires_at: i64,
}

impl Flow {
    pub(super) fn to_text(&self) -> String {
        json!({
            "server": self.server,
            "verifier": self.verifier.expose(),
            "name": self.name,
            "reconnect": self.reconnect,
            "expires_at": self.expires_at,
        })
        .to_string()
    }

    pub(super) fn from_text(text: &str) -> Result<Self, StoreError> {
        let value: Value = serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("oauth flow: {e}")))?;
        let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        let corrupt = || StoreError::Corrupt("oauth flow: a field is missing".into());
        Ok(Self {
            server: text("server").ok_or_else(corrupt)?,
            verifier: Secret::new(text("verifier").ok_or_else(corrupt)?),
            name: text("name").ok_or_else(corrupt)?,
            reconnect: text("reconnect"),
            expires_at: value.get("expires_at").and_then(Value::as_i64).ok_or_else(corrupt)?,
        })
    }
}

#[async_trait]
pub trait OauthFlows: Send + Sync {
    /// Records a started flow under `owner` and `state_key` (a hash of the state).
    async fn begin_flow(&self, owner: &Owner, state_key: &str, flow: &Flow) -> Result<(), StoreError>;

    /// Removes and returns `owner`'s flow `state_key` if it has not expired at `now`
    /// (Unix seconds). At most one caller ever gets a given flow.
    async fn take_flow(&self, owner: &Owner, state_key: &str, now: i64) -> Result<Option<Flow>, StoreError>;
}
