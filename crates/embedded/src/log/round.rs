//! What one round of the log's writer takes: the requests waiting (gathered, a busy round waiting up to
//! [`LogOptions::commit_delay`] for more), sorted into the appends to write, whom to answer, and the commits made
//! in the background, which are held until due ([`LogOptions::background_commit_delay`]).

use super::batch;
use super::{LogOptions, Request, Shared, TopicState};
use chat4all_core::ports::{LogError, OutgoingRecord, RecordPosition};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Requests besides its first that a round must already hold before it waits for more (PostgreSQL's
/// `commit_siblings`, whose default is 5). Below this the appends are too sparse for a wait to gather many: at
/// 2,000 msg/s about 93 % of the rounds held one or two requests, and a threshold of one made about half the
/// appends wait, which added 1.2 ms to the p99 for a tenth fewer bytes; at 10,000 msg/s more than half of the
/// rounds held three or more.
const COMMIT_SIBLINGS: usize = 2;

/// Adds to `batch` the requests waiting, up to [`LogOptions::max_batch_records`]. Once the batch holds more than
/// [`COMMIT_SIBLINGS`] others, many are writing, and it waits up to [`LogOptions::commit_delay`] for more, so
/// that one fsync covers theirs; a sparse round never waits.
pub(super) fn gather(requests: &Receiver<Request>, batch: &mut Vec<Request>, options: &LogOptions) {
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

pub(super) fn fail(request: Request, error: impl Fn() -> LogError) {
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
pub(super) type OffsetKey = (String, String, u32);

/// Commits made in the background and not yet written (see [`LogOptions::background_commit_delay`]); a later
/// commit of the same partition replaces an earlier one.
#[derive(Default)]
pub(super) struct HeldCommits {
    offsets: HashMap<OffsetKey, u64>,
    /// When the oldest of them arrived.
    since: Option<Instant>,
}

impl HeldCommits {
    pub(super) fn hold(&mut self, key: OffsetKey, next_offset: u64) {
        self.offsets.insert(key, next_offset);
        self.since.get_or_insert_with(Instant::now);
    }

    /// How long until they must be written; `None` when none are held.
    pub(super) fn due_in(&self, delay: Duration) -> Option<Duration> {
        self.since
            .map(|since| delay.saturating_sub(since.elapsed()))
    }

    pub(super) fn take(&mut self) -> HashMap<OffsetKey, u64> {
        self.since = None;
        std::mem::take(&mut self.offsets)
    }

    /// Holds again offsets whose write failed, unless a later commit has replaced them meanwhile.
    pub(super) fn restore(&mut self, offsets: HashMap<OffsetKey, u64>) {
        for (key, next_offset) in offsets {
            self.offsets.entry(key).or_insert(next_offset);
            self.since.get_or_insert_with(Instant::now);
        }
    }
}

/// What a round appends to one topic: each partition's new batches.
pub(super) struct TopicRound {
    pub(super) state: Arc<TopicState>,
    pub(super) partitions: Vec<batch::Building>,
}

impl TopicRound {
    pub(super) fn new(state: Arc<TopicState>) -> Self {
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
pub(super) struct Round {
    pub(super) appends: Vec<(String, Vec<OutgoingRecord>)>,
    pub(super) appended: Vec<AppendReply>,
    pub(super) waiting: Vec<oneshot::Sender<Result<(), LogError>>>,
}

impl Round {
    pub(super) fn from_requests(
        batch: Vec<Request>,
        shared: &Shared,
        held: &mut HeldCommits,
    ) -> Self {
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
