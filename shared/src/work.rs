//! Where the recheck's planner leaves connections for its workers: an SQS queue
//! when deployed (its event source mapping fans the work out to as many workers as
//! the operator allows). A message names a connection and nothing else: the worker
//! reads it afresh.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// `SendMessageBatch` calls in flight at once: a page of a thousand due connections is
/// queued in a few round trips without a burst of a hundred connections.
const SENDS_AT_ONCE: usize = 8;

/// One connection to check, and the lease its planner took: a worker checks it only
/// while that lease holds (or when it is due again anyway), so a message that outlived
/// its lease, and was queued again by a later run, is checked once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Work {
    pub owner: String,
    pub connection_id: String,
    /// The `due_at` (Unix seconds) the lease set.
    pub leased_until: i64,
}

#[async_trait]
pub trait WorkQueue: Send + Sync {
    /// Queues `items`; the ones it could not queue, with why.
    async fn enqueue(&self, items: &[Work]) -> Result<(), (Vec<Work>, String)>;
}

/// SQS's `SendMessageBatch`, ten messages a call, a few calls at once.
pub struct SqsQueue {
    client: crate::aws::LazyClient<aws_sdk_sqs::Client>,
    url: String,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        Self { client: crate::aws::LazyClient::ready(client), url: url.into() }
    }

    /// A queue whose client is built on the first send: a run with nothing due sends none.
    pub fn lazy(config: aws_config::SdkConfig, url: impl Into<String>) -> Self {
        Self { client: crate::aws::LazyClient::on_first_use(config), url: url.into() }
    }

    fn client(&self) -> &aws_sdk_sqs::Client {
        self.client.get(aws_sdk_sqs::Client::new)
    }
}

#[async_trait]
impl WorkQueue for SqsQueue {
    async fn enqueue(&self, items: &[Work]) -> Result<(), (Vec<Work>, String)> {
        use futures::StreamExt;
        let sends: Vec<_> = items.chunks(10).map(|batch| self.send(batch.to_vec())).collect();
        let sent: Vec<_> = futures::stream::iter(sends).buffer_unordered(SENDS_AT_ONCE).collect().await;
        let mut failed = Vec::new();
        let mut why = String::new();
        for (refused, reason) in sent {
            failed.extend(refused);
            if !reason.is_empty() {
                why = reason;
            }
        }
        if failed.is_empty() { Ok(()) } else { Err((failed, why)) }
    }
}

impl SqsQueue {
    /// One `SendMessageBatch`: what it refused, and why.
    async fn send(&self, batch: Vec<Work>) -> (Vec<Work>, String) {
        let entries: Vec<_> = batch
            .iter()
            .enumerate()
            .filter_map(|(n, work)| {
                let body = serde_json::to_string(work).ok()?;
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(n.to_string())
                    .message_body(body)
                    .build()
                    .ok()
            })
            .collect();
        match self.client().send_message_batch().queue_url(&self.url).set_entries(Some(entries)).send().await {
            // A batch succeeds as a call even when some entries are refused.
            Ok(output) => {
                let refused: Vec<Work> = output
                    .failed()
                    .iter()
                    .filter_map(|r| r.id().parse::<usize>().ok().and_then(|n| batch.get(n)).cloned())
                    .collect();
                (refused, output.failed().first().map(|r| r.code().to_owned()).unwrap_or_default())
            }
            Err(error) => (batch, aws_sdk_sqs::error::DisplayErrorContext(error).to_string()),
        }
    }
}
