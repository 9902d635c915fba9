//! Events the product acts on (e.g. emailing the user): a connection's status
//! changed, or nobody has used it for 90 days. The port and its adapters
//! (EventBridge deployed, the log locally). Their shapes are documented in
//! `infra/connection-status-changed.schema.json` and `infra/connection-unused.schema.json`.

use async_trait::async_trait;
use serde::Serialize;

use crate::domain::Status;

pub const SOURCE: &str = "bitbucket-connections";
pub const DETAIL_TYPE: &str = "Connection status changed";
pub const UNUSED_DETAIL_TYPE: &str = "Connection unused";

/// The `detail` of one event. Never a secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatusChanged {
    pub owner: String,
    pub connection_id: String,
    pub name: String,
    pub old_status: Status,
    pub new_status: Status,
    /// The problem code behind an `invalid` status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the user should do, in their words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<time::OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub changed_at: time::OffsetDateTime,
}

/// The `detail` of the event that tells a connection nobody has used for
/// [`Unused::DAYS`] days (and again every 90 more): a token kept for nothing is only a risk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unused {
    pub owner: String,
    pub connection_id: String,
    pub name: String,
    /// The last use, absent when a worker never used it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used: Option<crate::domain::LastUsed>,
    /// The last use, or the connection's creation.
    #[serde(with = "time::serde::rfc3339")]
    pub idle_since: time::OffsetDateTime,
    /// Whole idle days told: 90, 180, …
    pub days: u32,
}

impl Unused {
    pub const DAYS: u32 = 90;
}

/// One event of either kind.
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    StatusChanged(&'a StatusChanged),
    Unused(&'a Unused),
}

impl Event<'_> {
    pub fn detail_type(&self) -> &'static str {
        match self {
            Self::StatusChanged(_) => DETAIL_TYPE,
            Self::Unused(_) => UNUSED_DETAIL_TYPE,
        }
    }

    fn connection_id(&self) -> &str {
        match self {
            Self::StatusChanged(event) => &event.connection_id,
            Self::Unused(event) => &event.connection_id,
        }
    }

    fn detail(&self) -> Result<String, String> {
        match self {
            Self::StatusChanged(event) => serde_json::to_string(event),
            Self::Unused(event) => serde_json::to_string(event),
        }
        .map_err(|e| e.to_string())
    }
}

#[async_trait]
pub trait Events: Send + Sync {
    /// Publishes one event; an error means it was not accepted and must be retried.
    async fn publish(&self, event: Event<'_>) -> Result<(), String>;
}

/// EventBridge `PutEvents` on one bus.
pub struct EventBridgeEvents {
    client: crate::aws::LazyClient<aws_sdk_eventbridge::Client>,
    bus: String,
}

impl EventBridgeEvents {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Self {
        Self { client: crate::aws::LazyClient::ready(client), bus: bus.into() }
    }

    /// Events whose client is built on the first publish: most runs change no status.
    pub fn lazy(config: aws_config::SdkConfig, bus: impl Into<String>) -> Self {
        Self { client: crate::aws::LazyClient::on_first_use(config), bus: bus.into() }
    }

    fn client(&self) -> &aws_sdk_eventbridge::Client {
        self.client.get(aws_sdk_eventbridge::Client::new)
    }
}

#[async_trait]
impl Events for EventBridgeEvents {
    async fn publish(&self, event: Event<'_>) -> Result<(), String> {
        let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(SOURCE)
            .detail_type(event.detail_type())
            .detail(event.detail()?)
            .resources(format!("connection/{}", event.connection_id()))
            .build();
        let output = self
            .client()
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| aws_sdk_eventbridge::error::DisplayErrorContext(e).to_string())?;
        // PutEvents succeeds as a call even when an entry is refused.
        if output.failed_entry_count() > 0 {
            let code = output.entries().first().and_then(|e| e.error_code()).unwrap_or("unknown");
            return Err(format!("EventBridge refused the event: {code}"));
        }
        Ok(())
    }
}

/// Locally (no EventBridge): the event as a log line.
pub struct LoggedEvents;

#[async_trait]
impl Events for LoggedEvents {
    async fn publish(&self, event: Event<'_>) -> Result<(), String> {
        let detail = event.detail()?;
        tracing::info!(event = event.detail_type(), source = SOURCE, detail, "event");
        Ok(())
    }
}
