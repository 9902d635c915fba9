//! Status-change events the product acts on (e.g. emailing the user): the port
//! and its adapters (EventBridge deployed, the log locally). The event's shape
//! is documented in `infra/connection-status-changed.schema.json`.

use async_trait::async_trait;
use serde::Serialize;

use crate::domain::Status;

pub const SOURCE: &str = "bitbucket-connections";
pub const DETAIL_TYPE: &str = "Connection status changed";

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

#[async_trait]
pub trait Events: Send + Sync {
    /// Publishes one event; an error means it was not accepted and must be retried.
    async fn publish(&self, event: &StatusChanged) -> Result<(), String>;
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
    async fn publish(&self, event: &StatusChanged) -> Result<(), String> {
        let detail = serde_json::to_string(event).map_err(|e| e.to_string())?;
        let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(SOURCE)
            .detail_type(DETAIL_TYPE)
            .detail(detail)
            .resources(format!("connection/{}", event.connection_id))
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
    async fn publish(&self, event: &StatusChanged) -> Result<(), String> {
        let detail = serde_json::to_string(event).map_err(|e| e.to_string())?;
        tracing::info!(event = DETAIL_TYPE, source = SOURCE, detail, "event");
        Ok(())
    }
}
