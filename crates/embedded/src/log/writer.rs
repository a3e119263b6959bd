//! The log's one writer thread: drains every pending append and waited commit into one transaction (group
//! commit), answers only after the fsync, wakes the consumers, and reclaims space in the same transactions.
//! Commits made in the background are held and written with a later round
//! ([`LogOptions::background_commit_delay`]); a busy round may wait for more appends ([`LogOptions::commit_delay`]).

use super::batch;
use super::reclaim::Reclaimer;
use super::{LogOptions, Request, Shared, TopicState};
use crate::sqlite::lock;
use chat4all_core::ports::{LogError, OutgoingRecord, RecordPosition, partition_for};
use chat4all_core::time::now_millis;
use rusqlite::{Connection, params};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The writer thread: drains requests into one transaction each round, fsyncs once, then answers them all.
pub(super) fn run_writer(
    mut conn: Connection,
    requests: Receiver<Request>,
    shared: Arc<Shared>,
    options: LogOptions,
) {
    let mut reclaimer = Reclaimer::new();
    let mut held = HeldCommits::default();
    let mut open = true;
    while open {
        let mut batch = Vec::new();
        let first = match held.due_in(options.background_commit_delay) {
            None => requests.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(wait) => requests.recv_timeout(wait),
        };
        match first {
            Ok(request) => batch.push(request),
            Err(RecvTimeoutError::Timeout) => {} // only the held commits are due
            Err(RecvTimeoutError::Disconnected) => open = false,
        }
        if open {
            gather(&requests, &mut batch, &options);
        }
        if let Some(at) = batch.iter().position(|r| matches!(r, Request::Shutdown)) {
            open = false;
            batch.truncate(at);
        }
        let round = Round::from_requests(batch, &shared, &mut held);
        let flush = !open
            || !round.waiting.is_empty()
            || held.due_in(options.background_commit_delay) == Some(Duration::ZERO);
        let offsets = if flush { held.take() } else { HashMap::new() };
        round.write(&mut conn, offsets, &shared, &mut held, |tx| {
            reclaimer.run(tx, &shared, &options)
        });
    }
    // Answer anything that raced with the shutdown so no caller waits forever.
    for request in requests.try_iter() {
        fail(request, || LogError::Closed);
    }
    if let Err(e) = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE") {
        tracing::warn!(error = %e, "event log checkpoint at shutdown failed");
    }
}

/// Requests besides its first that a round must already hold before it waits for more (PostgreSQL's
/// `commit_siblings`, whose default is 5). Below this the appends are too sparse for a wait to gather many: at
/// 2,000 msg/s about 93 % of the rounds held one or two requests, and a threshold of one made about half the
/// appends wait, which added 1.2 ms to the p99 for a tenth fewer bytes; at 10,000 msg/s more than half of the
/// rounds held three or more.
const COMMIT_SIBLINGS: usize = 2;

/// Adds to `batch` the requests waiting, up to [`LogOptions::max_batch_records`]. Once the batch holds more than
/// [`COMMIT_SIBLINGS`] others, many are writing, and it waits up to [`LogOptions::commit_delay`] for more, so
/// that one fsync covers theirs; a sparse round never waits.
fn gather(requests: &Receiver<Request>, batch: &mut Vec<Request>, options: &LogOptions) {
    let mut weight: usize = batch.iter().map(Request::weight).sum();
    let wait_until = Instant::now() + options.commit_delay;
    while weight < options.max_batch_records {
        let next = match requests.try_recv() {
            Err(TryRecvError::Empty)
                if batch.len() > COMMIT_SIBLINGS && !options.commit_delay.is_zero() =>
            {
                requests
                    .recv_timeout(wait_until.saturating_duration_since(Instant::now()))
                    .ok()
            }
            next => next.ok(),
        };
        let Some(request) = next else { break };
        weight += request.weight();
        batch.push(request);
    }
}

fn fail(request: Request, error: impl Fn() -> LogError) {
    match request {
        Request::Append { reply, .. } => drop(reply.send(Err(error()))),
        Request::Commit { reply, .. } => {
            if let Some(reply) = reply {
                drop(reply.send(Err(error())));
            }
        }
        Request::Shutdown => {}
    }
}

/// A group's position in one partition of a topic: (group, topic, partition).
type OffsetKey = (String, String, u32);

/// Commits made in the background and not yet written (see [`LogOptions::background_commit_delay`]); a later
/// commit of the same partition replaces an earlier one.
#[derive(Default)]
struct HeldCommits {
    offsets: HashMap<OffsetKey, u64>,
    /// When the oldest of them arrived.
    since: Option<Instant>,
}

impl HeldCommits {
    fn hold(&mut self, key: OffsetKey, next_offset: u64) {
        self.offsets.insert(key, next_offset);
        self.since.get_or_insert_with(Instant::now);
    }

    /// How long until they must be written; `None` when none are held.
    fn due_in(&self, delay: Duration) -> Option<Duration> {
        self.since
            .map(|since| delay.saturating_sub(since.elapsed()))
    }

    fn take(&mut self) -> HashMap<OffsetKey, u64> {
        self.since = None;
        std::mem::take(&mut self.offsets)
    }

    /// Holds again offsets whose write failed, unless a later commit has replaced them meanwhile.
    fn restore(&mut self, offsets: HashMap<OffsetKey, u64>) {
        for (key, next_offset) in offsets {
            self.offsets.entry(key).or_insert(next_offset);
            self.since.get_or_insert_with(Instant::now);
        }
    }
}

/// What a round appends to one topic: each partition's new batches.
struct TopicRound {
    state: Arc<TopicState>,
    partitions: Vec<batch::Building>,
}

impl TopicRound {
    fn new(state: Arc<TopicState>) -> Self {
        let partitions = state
            .ends
            .iter()
            .map(|e| batch::Building::new(e.load(Ordering::Acquire)))
            .collect();
        Self { state, partitions }
    }
}

type AppendReply = oneshot::Sender<Result<Vec<RecordPosition>, LogError>>;

/// One round's requests: the appends to write, and whom to answer once they and the waited commits are durable.
/// Commits join the held ones, which the round writes when they are due.
struct Round {
    appends: Vec<(String, Vec<OutgoingRecord>)>,
    appended: Vec<AppendReply>,
    waiting: Vec<oneshot::Sender<Result<(), LogError>>>,
}

impl Round {
    fn from_requests(batch: Vec<Request>, shared: &Shared, held: &mut HeldCommits) -> Self {
        let mut round = Self {
            appends: Vec::new(),
            appended: Vec::new(),
            waiting: Vec::new(),
        };
        for request in batch {
            match request {
                Request::Append {
                    topic,
                    records,
                    reply,
                } => {
                    round.appends.push((topic, records));
                    round.appended.push(reply);
                }
                Request::Commit {
                    group,
                    topic,
                    partition,
                    next_offset,
                    reply,
                } => {
                    if partition >= shared.partitions {
                        let why = format!("partition {partition} does not exist");
                        match reply {
                            Some(reply) => drop(reply.send(Err(LogError::Invalid(why)))),
                            None => tracing::warn!(group, topic, "commit refused: {why}"),
                        }
                        continue;
                    }
                    held.hold((group, topic, partition), next_offset);
                    round.waiting.extend(reply);
                }
                Request::Shutdown => {}
            }
        }
        round
    }

    /// Writes the appends and `offsets` in one transaction, running `before_commit` in it last, then answers.
    /// Nothing to write costs no transaction.
    fn write(
        self,
        conn: &mut Connection,
        offsets: HashMap<OffsetKey, u64>,
        shared: &Shared,
        held: &mut HeldCommits,
        before_commit: impl FnOnce(&mut rusqlite::Transaction<'_>),
    ) {
        if self.appends.is_empty() && offsets.is_empty() {
            return;
        }
        let mut topics: HashMap<String, TopicRound> = HashMap::new();
        let mut positions = Vec::with_capacity(self.appends.len());
        let result = (|| -> rusqlite::Result<()> {
            let mut tx = conn.transaction()?;
            {
                for (topic, records) in self.appends {
                    let round = topics
                        .entry(topic)
                        .or_insert_with_key(|topic| TopicRound::new(shared.topic(topic)));
                    let mut written = Vec::with_capacity(records.len());
                    for record in &records {
                        let partition = partition_for(&record.key, shared.partitions);
                        let offset = round.partitions[partition as usize].add(record);
                        written.push(RecordPosition { partition, offset });
                    }
                    positions.push(written);
                }
                let mut insert = tx.prepare_cached(batch::INSERT)?;
                let now = now_millis();
                for (topic, round) in &topics {
                    for (partition, building) in round.partitions.iter().enumerate() {
                        for (first, end, blob) in building.batches() {
                            insert.execute(params![
                                topic,
                                partition as i64,
                                first as i64,
                                end as i64,
                                now,
                                blob
                            ])?;
                        }
                    }
                }
                let mut upsert = tx.prepare_cached(
                    "INSERT INTO offsets (grp, topic, partition, next_offset) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (grp, topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
                )?;
                for ((group, topic, partition), next_offset) in &offsets {
                    upsert.execute(params![group, topic, partition, *next_offset as i64])?;
                }
            }
            before_commit(&mut tx);
            tx.commit()
        })();
        if let Err(e) = result {
            tracing::error!(error = %e, "event log write failed; the batch was rolled back");
            held.restore(offsets);
            for reply in self.appended {
                drop(reply.send(Err(LogError::Backend(e.to_string()))));
            }
            for reply in self.waiting {
                drop(reply.send(Err(LogError::Backend(e.to_string()))));
            }
            return;
        }
        lock(&shared.committed).extend(offsets);
        for round in topics.into_values() {
            for (slot, building) in round.state.ends.iter().zip(&round.partitions) {
                slot.store(building.end(), Ordering::Release);
            }
            round.state.appended.notify_waiters();
        }
        for (reply, written) in self.appended.into_iter().zip(positions) {
            drop(reply.send(Ok(written)));
        }
        for reply in self.waiting {
            drop(reply.send(Ok(())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    fn commit(next_offset: u64) -> Request {
        Request::Commit {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            next_offset,
            reply: None,
        }
    }

    fn delayed(commit_delay: Duration) -> LogOptions {
        LogOptions {
            commit_delay,
            ..LogOptions::default()
        }
    }

    #[test]
    fn a_busy_round_waits_its_commit_delay_for_more() {
        let (sender, requests) = channel();
        for offset in 1..=COMMIT_SIBLINGS {
            sender.send(commit(offset as u64)).unwrap();
        }
        let mut batch = vec![commit(0)];
        // Sent while the round waits: its first request and its siblings were already there.
        let late = std::thread::spawn(move || {
            for offset in COMMIT_SIBLINGS as u64 + 1..40 {
                sender.send(commit(offset)).unwrap();
            }
        });
        gather(&requests, &mut batch, &delayed(Duration::from_secs(1)));
        late.join().unwrap();
        assert_eq!(batch.len(), 40);
    }

    #[test]
    fn a_sparse_round_does_not_wait() {
        let (_sender, requests) = channel();
        let mut batch: Vec<Request> = (0..COMMIT_SIBLINGS as u64).map(commit).collect();
        let started = Instant::now();
        gather(&requests, &mut batch, &delayed(Duration::from_secs(600)));
        assert_eq!(batch.len(), COMMIT_SIBLINGS);
        assert!(started.elapsed() < Duration::from_secs(300), "it waited");
    }

    #[test]
    fn without_a_delay_a_round_takes_only_what_is_waiting() {
        let (sender, requests) = channel();
        sender.send(commit(1)).unwrap();
        let mut batch = vec![commit(0), commit(1)];
        gather(&requests, &mut batch, &LogOptions::default());
        assert_eq!(batch.len(), 3);
    }

    #[test]
    fn a_round_stops_gathering_at_its_most_records() {
        let (sender, requests) = channel();
        for offset in 1..10 {
            sender.send(commit(offset)).unwrap();
        }
        let mut batch = vec![commit(0)];
        let options = LogOptions {
            max_batch_records: 4,
            ..delayed(Duration::from_secs(600))
        };
        gather(&requests, &mut batch, &options);
        assert_eq!(batch.len(), 4);
    }
}
