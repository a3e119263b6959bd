//! The loop over one partition: poll, wait a little for more when the batch is small, process with retries,
//! commit in the background.

use super::together::{Failed, Together};
use chat4all_core::ports::{PartitionConsumer, Record};
use chat4all_core::resilience::Backoff;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Most records one partition's loop takes in one batch. The batches of partitions ready at once go through as
/// one run (`together`), and a run's store and log round trips cost the same whatever its size: a new embedded
/// log's `DEFAULT_PARTITIONS` (2) let a run hold up to 4,096 records, as its 8 partitions of 512 did before.
const BATCH: usize = 2048;
/// Delays between retries of a failing batch.
const BATCH_RETRY: Backoff = Backoff {
    base: Duration::from_millis(50),
    max: Duration::from_secs(5),
};
/// How long an idle poll waits before checking for shutdown again.
const IDLE_WAIT: Duration = Duration::from_millis(500);
/// A batch smaller than [`LINGER_BELOW`] waits this long for more records before it is handled (Kafka's consumers
/// get the same from `fetch.min.bytes` and `fetch.max.wait.ms`). Each run costs a store commit, an fsync, whatever
/// its size: at 1,750 messages/s the router committed 770 times a second, and the store's share of the disk made
/// the accept path's fsyncs wait. Delivery waits up to this much longer; the accept path does not.
const LINGER: Duration = Duration::from_millis(5);
/// Batches at least this large go through at once. The rate is then high enough for runs to share their commits,
/// and waiting would only hold up the router: with 64, the open model's knee fell from 10,000 to 7,500 msg/s.
const LINGER_BELOW: usize = 8;

/// Consumes one partition in batches until `stop`, then waits for its last commit (see the module documentation).
pub(super) async fn run(
    mut consumer: Box<dyn PartitionConsumer>,
    handler: Together,
    stop: CancellationToken,
    name: String,
) {
    tracing::debug!(consumer = name, "consumer started");
    // The last offset committed in the background and not yet waited for.
    let mut unconfirmed = None;
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
        let records = if records.len() < LINGER_BELOW {
            top_up(consumer.as_mut(), records, &stop, &name).await
        } else {
            records
        };
        let next_offset = records.last().map_or(0, |r| r.offset + 1);
        if !process(&handler, records, &stop, &name).await {
            break; // Shutting down mid-retry: not committed, so the batch is replayed on restart.
        }
        match consumer.commit_in_background(next_offset) {
            Ok(()) => unconfirmed = Some(next_offset),
            Err(e) => {
                tracing::error!(consumer = name, error = %e, "commit failed; the batch will be replayed")
            }
        }
    }
    if let Some(next_offset) = unconfirmed
        && let Err(e) = consumer.commit(next_offset).await
    {
        tracing::error!(consumer = name, error = %e, "last commit failed; its batches will be replayed");
    }
    tracing::debug!(consumer = name, "consumer stopped");
}

/// Adds to a small batch what the partition receives within [`LINGER`] (nothing when shutdown comes first).
pub(super) async fn top_up(
    consumer: &mut dyn PartitionConsumer,
    mut records: Vec<Record>,
    stop: &CancellationToken,
    name: &str,
) -> Vec<Record> {
    if pause(stop, LINGER).await {
        return records;
    }
    match consumer.poll(BATCH - records.len(), Duration::ZERO).await {
        Ok(more) => records.extend(more),
        // The records in hand go on; the next poll reads the rest.
        Err(e) => {
            tracing::warn!(consumer = name, error = %e, "poll failed; the batch goes on without more")
        }
    }
    records
}

/// Runs the batch until it succeeds; false when shutdown interrupted the retries (or the records were lost with
/// the runner).
async fn process(
    handler: &Together,
    mut records: Vec<Record>,
    stop: &CancellationToken,
    name: &str,
) -> bool {
    let mut attempt = 0;
    loop {
        let Failed {
            error,
            records: back,
        } = match handler.run(records).await {
            Ok(()) => return true,
            Err(failed) => failed,
        };
        let Some(back) = back else {
            tracing::error!(consumer = name, %error, "batch lost with its runner; not committed, read again after a restart");
            return false;
        };
        records = back;
        let delay = BATCH_RETRY.delay(attempt);
        attempt = attempt.saturating_add(1);
        tracing::error!(consumer = name, %error, retry_in_ms = delay.as_millis() as u64, "batch failed; retrying");
        if pause(stop, delay).await {
            return false;
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
