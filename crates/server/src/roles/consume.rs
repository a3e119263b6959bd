//! The consume loop every worker shares: poll a partition, process the batch, commit only once the work is
//! durable, retry the same batch (with backoff) while processing fails.

use super::Tasks;
use chat4all_core::ServiceError;
use chat4all_core::ports::{EventLog, PartitionConsumer, Record};
use chat4all_core::resilience::Backoff;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Most records handled in one batch.
const BATCH: usize = 512;
/// Delays between retries of a failing batch.
const BATCH_RETRY: Backoff = Backoff {
    base: Duration::from_millis(50),
    max: Duration::from_secs(5),
};
/// How long an idle poll waits before checking for shutdown again.
const IDLE_WAIT: Duration = Duration::from_millis(500);

/// Processes one batch; must only return `Ok` once its effects are durable.
pub type BatchHandler =
    Arc<dyn Fn(Vec<Record>) -> BoxFuture<'static, Result<(), ServiceError>> + Send + Sync>;

impl Tasks {
    /// Starts one consumer per partition of `topic` for `group`, each handing batches to `handler`.
    pub async fn consume_all(
        &self,
        log: &Arc<dyn EventLog>,
        group: &str,
        topic: &str,
        handler: BatchHandler,
    ) -> anyhow::Result<()> {
        for partition in 0..log.partition_count() {
            let consumer = log.consumer(group, topic, partition).await?;
            let (handler, name) = (handler.clone(), format!("{group}/{topic}/{partition}"));
            self.spawn(move |stop| run(consumer, handler, stop, name));
        }
        Ok(())
    }
}

async fn run(
    mut consumer: Box<dyn PartitionConsumer>,
    handler: BatchHandler,
    stop: CancellationToken,
    name: String,
) {
    tracing::debug!(consumer = name, "consumer started");
    while !stop.is_cancelled() {
        let batch = tokio::select! {
            _ = stop.cancelled() => break,
            polled = consumer.poll(BATCH, IDLE_WAIT) => polled,
        };
        let records = match batch {
            Ok(records) if records.is_empty() => continue,
            Ok(records) => records,
            Err(e) => {
                tracing::error!(consumer = name, error = %e, "poll failed; retrying");
                if pause(&stop, Duration::from_secs(1)).await {
                    break;
                }
                continue;
            }
        };
        let next_offset = records.last().map_or(0, |r| r.offset + 1);
        if !process(&handler, records, &stop, &name).await {
            break; // Shutting down mid-retry: not committed, so the batch is replayed on restart.
        }
        if let Err(e) = consumer.commit(next_offset).await {
            tracing::error!(consumer = name, error = %e, "commit failed; the batch will be replayed");
        }
    }
    tracing::debug!(consumer = name, "consumer stopped");
}

/// Runs the handler until it succeeds; false when shutdown interrupted the retries.
async fn process(
    handler: &BatchHandler,
    records: Vec<Record>,
    stop: &CancellationToken,
    name: &str,
) -> bool {
    let mut attempt = 0;
    loop {
        match handler(records.clone()).await {
            Ok(()) => return true,
            Err(e) => {
                let delay = BATCH_RETRY.delay(attempt);
                attempt = attempt.saturating_add(1);
                tracing::error!(consumer = name, error = %e, retry_in_ms = delay.as_millis() as u64, "batch failed; retrying");
                if pause(stop, delay).await {
                    return false;
                }
            }
        }
    }
}

/// Sleeps for `duration`; true when shutdown came first.
async fn pause(stop: &CancellationToken, duration: Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => true,
        _ = tokio::time::sleep(duration) => false,
    }
}
