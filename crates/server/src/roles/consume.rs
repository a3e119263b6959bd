//! The consume loop every worker shares. A role joins its group's subscription to a topic; one task per
//! membership runs a loop for each partition it is assigned and, on revocation or shutdown, stops those loops
//! (each finishes its batch and commits) before the partitions are let go. The batch loop polls, processes,
//! commits only once the work is durable, and retries the same batch (with backoff) while processing fails.
//! Where partitions need no loop of their own (`consume_all`), their batches are handled together.

use super::Tasks;
use chat4all_core::ServiceError;
use chat4all_core::ports::{EventLog, GroupMember, PartitionConsumer, Rebalance, Record};
use chat4all_core::resilience::Backoff;
use futures::FutureExt;
use futures::future::{BoxFuture, join_all};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
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

/// Processes one batch; must only return `Ok` once its effects are durable.
pub type BatchHandler =
    Arc<dyn Fn(Vec<Record>) -> BoxFuture<'static, Result<(), ServiceError>> + Send + Sync>;

/// Consumes one assigned partition until its token is cancelled, committing what it finished before it returns
/// (the consumer it drops then releases the partition).
pub type PartitionLoop = Arc<
    dyn Fn(Box<dyn PartitionConsumer>, CancellationToken) -> BoxFuture<'static, ()> + Send + Sync,
>;

impl Tasks {
    /// Consumes `topic` for `group` in batches handed to `handler`, on the partitions this process is assigned;
    /// batches of several partitions that are ready at once go to `handler` as one (see [`together`]).
    pub async fn consume_all(
        &self,
        log: &Arc<dyn EventLog>,
        group: &str,
        topic: &str,
        handler: BatchHandler,
    ) -> anyhow::Result<()> {
        let handler = together(handler);
        let label = format!("{group}/{topic}");
        let each: PartitionLoop = Arc::new(move |consumer, stop| {
            let name = format!("{label}/{}", consumer.partition());
            run(consumer, handler.clone(), stop, name).boxed()
        });
        self.consume_partitions(log, group, topic, each).await
    }

    /// Joins `group`'s subscription to `topic` and runs `each` on every partition assigned to this process.
    pub async fn consume_partitions(
        &self,
        log: &Arc<dyn EventLog>,
        group: &str,
        topic: &str,
        each: PartitionLoop,
    ) -> anyhow::Result<()> {
        let member = log
            .subscribe(group, topic, &format!("chat4all-{}", std::process::id()))
            .await?;
        let name = format!("{group}/{topic}");
        self.spawn(move |stop| membership(member, each, stop, name));
        Ok(())
    }
}

/// A batch waiting for the run of the handler that carries it, and where to answer.
type Waiting = (Vec<Record>, oneshot::Sender<Result<(), ServiceError>>);

/// Runs the batches of many partition loops together: while `handler` runs, the batches that arrive wait, then go
/// through as one run, and each loop gets that run's outcome (and commits its own partition once it succeeds).
/// Every run costs its store and log round trips whatever its size, so eight partitions each ready with a few
/// records cost one run instead of eight. Order holds: a loop hands over its next batch only after the last one's
/// outcome, so a run carries at most one batch per partition.
pub fn together(handler: BatchHandler) -> BatchHandler {
    let (batches, mut waiting) = mpsc::unbounded_channel::<Waiting>();
    // Ends when the last copy of the returned handler is dropped, after answering every batch it took.
    tokio::spawn(async move {
        while let Some((mut records, reply)) = waiting.recv().await {
            let mut replies = vec![reply];
            while let Ok((more, reply)) = waiting.try_recv() {
                records.extend(more);
                replies.push(reply);
            }
            let outcome = handler(records).await;
            for reply in replies {
                let _ = reply.send(outcome.clone());
            }
        }
    });
    Arc::new(move |records| {
        let batches = batches.clone();
        async move {
            let stopped = || ServiceError::Unavailable("the batch runner stopped".into());
            let (reply, outcome) = oneshot::channel();
            batches.send((records, reply)).map_err(|_| stopped())?;
            outcome.await.map_err(|_| stopped())?
        }
        .boxed()
    })
}

/// Follows the member's assignment until shutdown, then stops its partition loops and leaves the group.
async fn membership(
    mut member: Box<dyn GroupMember>,
    each: PartitionLoop,
    stop: CancellationToken,
    name: String,
) {
    let mut running: HashMap<u32, (CancellationToken, JoinHandle<()>)> = HashMap::new();
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => break,
            event = member.next_event() => event,
        };
        match event {
            Ok(Rebalance::Assigned(consumers)) => {
                rebalanced(&name, "assigned");
                for consumer in consumers {
                    let (partition, token) = (consumer.partition(), stop.child_token());
                    tracing::info!(consumer = name, partition, "partition assigned");
                    let handle = tokio::spawn(each(consumer, token.clone()));
                    running.insert(partition, (token, handle));
                }
            }
            Ok(Rebalance::Revoked(partitions)) => {
                rebalanced(&name, "revoked");
                tracing::info!(consumer = name, ?partitions, "partitions revoked");
                finish(partitions.iter().filter_map(|p| running.remove(p)), &name).await;
            }
            Err(e) => {
                tracing::warn!(consumer = name, error = %e, "subscription ended");
                break;
            }
        }
        metrics::gauge!("consumer_partitions_owned", "consumer" => name.clone())
            .set(running.len() as f64);
    }
    finish(running.into_values(), &name).await;
    metrics::gauge!("consumer_partitions_owned", "consumer" => name.clone()).set(0.0);
    drop(member); // Leaves only now, every partition committed and released.
}

/// Counts a rebalance event of this process's member (`change`: assigned or revoked).
fn rebalanced(consumer: &str, change: &'static str) {
    metrics::counter!("consumer_rebalances_total", "consumer" => consumer.to_owned(), "change" => change)
        .increment(1);
}

/// Stops partition loops and waits until each has committed and dropped its consumer.
async fn finish(loops: impl Iterator<Item = (CancellationToken, JoinHandle<()>)>, name: &str) {
    let handles: Vec<_> = loops
        .map(|(token, handle)| {
            token.cancel();
            handle
        })
        .collect();
    for ended in join_all(handles).await {
        if let Err(e) = ended {
            tracing::error!(consumer = name, error = %e, "a partition loop panicked");
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use chat4all_core::ports::OutgoingRecord;
    use chat4all_embedded::{LogOptions, SqliteLog};
    use std::sync::Mutex;
    use tokio::sync::watch;

    /// What the members processed: (member, payload), and a running count to wait on.
    struct Seen {
        records: Mutex<Vec<(usize, String)>>,
        count: watch::Sender<usize>,
    }

    fn handler(seen: Arc<Seen>, member: usize) -> BatchHandler {
        Arc::new(move |records| {
            let seen = seen.clone();
            async move {
                let payloads = records
                    .iter()
                    .map(|r| (member, String::from_utf8_lossy(&r.payload).into_owned()));
                let added = {
                    let mut all = seen.records.lock().unwrap();
                    all.extend(payloads);
                    records.len()
                };
                seen.count.send_modify(|n| *n += added);
                Ok(())
            }
            .boxed()
        })
    }

    /// Appends ten records over every partition and waits until the members processed them.
    async fn send_ten(log: &Arc<dyn EventLog>, seen: &Seen, sent: &mut usize) {
        let records = (0..10)
            .map(|i| OutgoingRecord {
                key: format!("k{i}"),
                headers: Vec::new(),
                payload: format!("{}", *sent + i).into_bytes(),
            })
            .collect();
        log.append_batch("t", records).await.unwrap();
        *sent += 10;
        let target = *sent;
        let mut count = seen.count.subscribe();
        tokio::time::timeout(Duration::from_secs(10), count.wait_for(|n| *n >= target))
            .await
            .expect("the members process what is appended")
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn members_hand_partitions_over_without_losing_or_repeating_records() {
        let dir = tempfile::tempdir().unwrap();
        let options = LogOptions {
            partitions: Some(4),
            ..LogOptions::default()
        };
        let log: Arc<dyn EventLog> =
            Arc::new(SqliteLog::open(&dir.path().join("events.db"), options).unwrap());
        let seen = Arc::new(Seen {
            records: Mutex::default(),
            count: watch::channel(0).0,
        });
        let first = Tasks::default();
        first
            .consume_all(&log, "g", "t", handler(seen.clone(), 0))
            .await
            .unwrap();
        let mut sent = 0;
        send_ten(&log, &seen, &mut sent).await;

        let second = Tasks::default();
        second
            .consume_all(&log, "g", "t", handler(seen.clone(), 1))
            .await
            .unwrap();
        let second_works = |seen: &Seen| seen.records.lock().unwrap().iter().any(|(m, _)| *m == 1);
        for _ in 0..50 {
            send_ten(&log, &seen, &mut sent).await;
            if second_works(&seen) {
                break;
            }
        }
        assert!(
            second_works(&seen),
            "a joining member takes over some partitions"
        );

        assert!(
            second.shutdown(Duration::from_secs(5)).await,
            "a member stops cleanly"
        );
        send_ten(&log, &seen, &mut sent).await;
        assert!(first.shutdown(Duration::from_secs(5)).await);

        let mut payloads: Vec<u64> = seen
            .records
            .lock()
            .unwrap()
            .iter()
            .map(|(_, p)| p.parse().unwrap())
            .collect();
        payloads.sort_unstable();
        assert_eq!(
            payloads,
            (0..sent as u64).collect::<Vec<_>>(),
            "every record processed exactly once"
        );
        assert_eq!(
            log.lag("g", "t").await.unwrap(),
            vec![0; 4],
            "everything committed"
        );
        log.close().await;
    }
}
