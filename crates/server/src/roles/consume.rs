//! The consume loop every worker shares. A role joins its group's subscription to a topic; one task per
//! membership runs a loop for each partition it is assigned and, on revocation or shutdown, stops those loops
//! (each finishes its batch and commits) before the partitions are let go. The batch loop polls, processes,
//! commits only once the work is durable, and retries the same batch (with backoff) while processing fails. It
//! commits each batch in the background and waits only for its last commit, when it stops: a batch never waits
//! for the one before to be marked, and a crash replays at most the batches whose marks were still in flight.
//! Where partitions need no loop of their own (`consume_all`), their batches are handled together; a handler
//! that panics fails its run like an error does, and the run is retried with its records.

use super::Tasks;
use chat4all_core::ServiceError;
use chat4all_core::ports::{EventLog, GroupMember, PartitionConsumer, Rebalance, Record};
use chat4all_core::resilience::Backoff;
use futures::FutureExt;
use futures::future::{BoxFuture, join_all};
use std::any::Any;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
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
/// A batch smaller than [`LINGER_BELOW`] waits this long for more records before it is handled (Kafka's consumers
/// get the same from `fetch.min.bytes` and `fetch.max.wait.ms`). Each run costs a store commit, an fsync, whatever
/// its size: at 1,750 messages/s the router committed 770 times a second, and the store's share of the disk made
/// the accept path's fsyncs wait. Delivery waits up to this much longer; the accept path does not.
const LINGER: Duration = Duration::from_millis(5);
/// Batches at least this large go through at once. The rate is then high enough for runs to share their commits,
/// and waiting would only hold up the router: with 64, the open model's knee fell from 10,000 to 7,500 msg/s.
const LINGER_BELOW: usize = 8;

/// Processes one batch; must only return `Ok` once its effects are durable. It borrows the records: the runner
/// keeps them, so a batch that fails, or whose handler panics, is retried without having been copied.
pub type BatchHandler =
    Arc<dyn for<'a> Fn(&'a [Record]) -> BoxFuture<'a, Result<(), ServiceError>> + Send + Sync>;

/// A batch that failed: why, and its records (`None` when they were lost with the runner, which happens only
/// when the runtime stops; nothing was committed, so they are read again after a restart).
#[derive(Debug)]
struct Failed {
    error: ServiceError,
    records: Option<Vec<Record>>,
}

impl Failed {
    /// `records` failed with `error`.
    fn new(error: ServiceError, records: Vec<Record>) -> Self {
        Self {
            error,
            records: Some(records),
        }
    }
}

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
type Waiting = (Vec<Record>, oneshot::Sender<Result<(), Failed>>);

/// Runs the batches of many partition loops together: while the handler runs, the batches that arrive wait, then
/// go through as one run, and each loop gets that run's outcome (and commits its own partition once it succeeds,
/// or gets its own records back when it failed). Every run costs its store and log round trips whatever its size,
/// so eight partitions each ready with a few records cost one run instead of eight. Order holds: a loop hands
/// over its next batch only after the last one's outcome, so a run carries at most one batch per partition.
#[derive(Clone)]
pub struct Together {
    batches: mpsc::UnboundedSender<Waiting>,
}

/// [`Together`] around `handler`; its runner ends when the last copy is dropped, after answering every batch it
/// took.
pub fn together(handler: BatchHandler) -> Together {
    let (batches, mut waiting) = mpsc::unbounded_channel::<Waiting>();
    tokio::spawn(async move {
        while let Some((mut records, reply)) = waiting.recv().await {
            let mut parts = vec![(records.len(), reply)];
            while let Ok((more, reply)) = waiting.try_recv() {
                parts.push((more.len(), reply));
                records.extend(more);
            }
            // A panic fails the run like an error: the records stay here, so the loops retry them, and the
            // runner goes on for every other partition.
            let outcome = AssertUnwindSafe(handler(&records))
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| Err(panicked(panic.as_ref())));
            match outcome {
                Ok(()) => parts.into_iter().for_each(|(_, reply)| {
                    let _ = reply.send(Ok(()));
                }),
                Err(error) => {
                    // Each loop's records are a run of the merged batch, in the order the loops arrived.
                    for (len, reply) in parts.into_iter().rev() {
                        let own = records.split_off(records.len() - len);
                        let _ = reply.send(Err(Failed::new(error.clone(), own)));
                    }
                }
            }
        }
    });
    Together { batches }
}

impl Together {
    /// Runs `records` in the next run; when it fails, hands them back with the reason.
    async fn run(&self, records: Vec<Record>) -> Result<(), Failed> {
        let stopped = || ServiceError::Unavailable("the batch runner stopped".into());
        let (reply, outcome) = oneshot::channel();
        if let Err(unsent) = self.batches.send((records, reply)) {
            return Err(Failed::new(stopped(), unsent.0.0));
        }
        outcome.await.unwrap_or_else(|_| {
            Err(Failed {
                error: stopped(),
                records: None,
            })
        })
    }
}

/// The error a panicking handler's run fails with.
fn panicked(panic: &(dyn Any + Send)) -> ServiceError {
    let why = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic");
    ServiceError::Internal(format!("the batch handler panicked: {why}"))
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
async fn top_up(
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

#[cfg(test)]
mod tests {
    use super::*;
    use chat4all_core::ports::OutgoingRecord;
    use chat4all_embedded::{LogOptions, SqliteLog};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
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
        let (log, seen) = four_partitions(&dir);
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

        assert_processed_once(&log, &seen, sent).await;
    }

    /// Runs whose handler panics are retried with their records, and the runner goes on: none lost, none processed
    /// twice, and no partition left unread.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_run_is_retried_without_losing_or_repeating_records() {
        first_runs_go_wrong(2, || panic!("a bug in the handler")).await;
    }

    /// Runs that fail are retried with the records they handed back: none lost, none processed twice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_run_is_retried_without_losing_or_repeating_records() {
        first_runs_go_wrong(3, || {
            Err(ServiceError::Unavailable("the store is down".into()))
        })
        .await;
    }

    /// Consumes twenty records with a handler whose first `count` runs end as `wrong` ends them (an error, a
    /// panic), then checks that every record was processed once and committed.
    async fn first_runs_go_wrong(count: usize, wrong: fn() -> Result<(), ServiceError>) {
        let dir = tempfile::tempdir().unwrap();
        let (log, seen) = four_partitions(&dir);
        let left = Arc::new(AtomicUsize::new(count));
        let inner = handler(seen.clone(), 0);
        let misbehaving: BatchHandler = {
            let left = left.clone();
            Arc::new(move |records| {
                let goes_wrong = left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                let inner = inner.clone();
                async move {
                    if goes_wrong {
                        return wrong();
                    }
                    inner(records).await
                }
                .boxed()
            })
        };
        let tasks = Tasks::default();
        tasks
            .consume_all(&log, "g", "t", misbehaving)
            .await
            .unwrap();
        let mut sent = 0;
        send_ten(&log, &seen, &mut sent).await;
        assert_eq!(left.load(Ordering::SeqCst), 0, "the first runs went wrong");
        send_ten(&log, &seen, &mut sent).await;
        assert!(tasks.shutdown(Duration::from_secs(5)).await);
        assert_processed_once(&log, &seen, sent).await;
    }

    /// A merged run that fails hands each batch its own records back (each loop commits its own partition once
    /// its records succeed, so a loop holding another's records could commit what was never processed).
    #[tokio::test]
    async fn a_failed_merged_run_hands_each_batch_its_own_records_back() {
        let started = Arc::new(tokio::sync::Notify::new());
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let runs = Arc::new(Mutex::new(Vec::new()));
        let failing: BatchHandler = {
            let (started, release, runs) = (started.clone(), release.clone(), runs.clone());
            Arc::new(move |records: &[Record]| {
                let (started, release, runs) = (started.clone(), release.clone(), runs.clone());
                async move {
                    runs.lock().unwrap().push(records.len());
                    started.notify_one();
                    release.acquire().await.unwrap().forget();
                    Err(ServiceError::Unavailable("the store is down".into()))
                }
                .boxed()
            })
        };
        let batch = |partition: u32, count: u64| -> Vec<Record> {
            (0..count)
                .map(|offset| Record {
                    partition,
                    offset,
                    key: String::new(),
                    headers: Vec::new(),
                    payload: Vec::new(),
                    timestamp: 0,
                })
                .collect()
        };
        let runner = together(failing);
        let mut first = Box::pin(runner.run(batch(0, 1)));
        assert!(futures::poll!(&mut first).is_pending());
        started.notified().await;
        // The first run is under way: these two wait for it and then go through as one run.
        let (mut second, mut third) = (
            Box::pin(runner.run(batch(1, 2))),
            Box::pin(runner.run(batch(2, 3))),
        );
        assert!(futures::poll!(&mut second).is_pending());
        assert!(futures::poll!(&mut third).is_pending());
        release.add_permits(2);
        for (outcome, partition, count) in [(first, 0, 1), (second, 1, 2), (third, 2, 3)] {
            let back = outcome
                .await
                .unwrap_err()
                .records
                .expect("records handed back");
            assert_eq!(
                back,
                batch(partition, count),
                "partition {partition}'s own records"
            );
        }
        assert_eq!(
            *runs.lock().unwrap(),
            [1, 5],
            "the second and third batches ran as one"
        );
    }

    /// A log of four partitions in `dir`, and an empty record of what members processed.
    /// A small batch takes what its partition received meanwhile, unless the loop is stopping.
    #[tokio::test]
    async fn a_small_batch_is_topped_up_with_what_arrived() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = four_partitions(&dir);
        let record = |payload: &str| OutgoingRecord {
            key: "k".into(),
            headers: Vec::new(),
            payload: payload.into(),
        };
        let partition = log.append("t", record("a")).await.unwrap().partition;
        let mut consumer = log.consumer("g", "t", partition).await.unwrap();
        let first = consumer.poll(10, Duration::from_secs(5)).await.unwrap();
        log.append("t", record("b")).await.unwrap();
        let stop = CancellationToken::new();
        let batch = top_up(consumer.as_mut(), first, &stop, "test").await;
        let payloads = |records: &[Record]| {
            records
                .iter()
                .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            payloads(&batch),
            ["a", "b"],
            "the record that arrived joins the batch"
        );

        log.append("t", record("c")).await.unwrap();
        stop.cancel();
        let kept = top_up(consumer.as_mut(), batch, &stop, "test").await;
        assert_eq!(
            payloads(&kept),
            ["a", "b"],
            "a stopping loop does not wait for more"
        );
        log.close().await;
    }

    fn four_partitions(dir: &tempfile::TempDir) -> (Arc<dyn EventLog>, Arc<Seen>) {
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
        (log, seen)
    }

    /// Every one of the `sent` records was processed once and committed; closes the log.
    async fn assert_processed_once(log: &Arc<dyn EventLog>, seen: &Seen, sent: usize) {
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
