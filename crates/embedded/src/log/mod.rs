//! The embedded event log: a durable, partitioned, append-only log in a directory of segment files, as Kafka
//! keeps one.
//!
//! All writes go through one writer thread that drains every pending request into one write of frames to the
//! newest segment and one `fdatasync`, so many concurrent appenders share one flush (group commit); an append is
//! answered only after its flush. A round stores each partition's new records as one frame (`batch`), and the
//! committed offsets of consumer groups as frames of their own, so after a restart each group resumes where it
//! committed (`recovery` reads the segments back). Where each batch lies is kept in memory (`index`); consumers
//! read the files directly and wait on an in-memory signal for new records. Group members of this process share
//! partitions through an in-process coordinator (`groups`). A segment whose records every group has committed, or
//! which is older than the retention period, is deleted whole or kept as a spare file for a later segment
//! (`reclaim`). Live topics (`live`) never reach the disk: they are kept in memory for the readers that follow
//! them. A log kept by earlier builds in one SQLite file is converted when first opened (`legacy`).

mod batch;
mod groups;
mod index;
mod legacy;
mod live;
mod read;
mod reclaim;
mod recovery;
mod round;
mod segment;
mod writer;

use crate::sqlite::lock;
use async_trait::async_trait;
use chat4all_core::ports::{
    EventLog, GroupMember, LogError, OutgoingRecord, PartitionConsumer, RecordPosition, Tail,
};
use groups::{Coordinator, GroupKey, Lease};
use index::PartitionIndex;
use live::Recent;
use read::{SegmentConsumer, SegmentTail};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, oneshot};

/// Partitions per topic of a new log unless told otherwise. One process reads them all (its router takes the
/// partitions that are ready at once as one run), so more partitions buy no parallelism, while each partition a
/// round appends to is one more frame to write.
pub const DEFAULT_PARTITIONS: u32 = 2;

/// Tuning of the embedded log.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Partitions per topic, fixed when the log is created; `None`: the count it was created with, or
    /// [`DEFAULT_PARTITIONS`] for a new log.
    pub partitions: Option<u32>,
    /// Records older than this are deleted even if some group has not consumed them.
    pub retention: Duration,
    /// Topics kept in memory only, for readers that follow them live ([`EventLog::tail`]), such as a fan-out
    /// stream derived from durable state: appends are answered without touching the disk and nothing replays
    /// them after a restart, so groups cannot consume them (see the `live` module).
    pub live_topics: HashSet<String>,
    /// Most records each partition of a live topic keeps for tails that fall behind.
    pub live_records_per_partition: usize,
    /// Most records written in one round.
    pub max_batch_records: usize,
    /// Size past which the writer starts a new segment. A segment is reclaimed whole, so the disk holds at least
    /// this much beyond what some group has still to read, plus [`reclaim::SPARES`] files of it kept for reuse.
    pub segment_bytes: u64,
    /// How often the writer looks for segments to reclaim, after a round's answers.
    pub reclaim_interval: Duration,
    /// Longest a commit made in the background waits to be written. The writer holds such commits and writes
    /// them with the appends of the first round after this (or at once with a waited commit), so a batch loop's
    /// commits neither cost a flush of their own nor a frame in every round. A crash replays at most this much
    /// more, which at-least-once allows; records are reclaimed only once their commit is written.
    pub background_commit_delay: Duration,
    /// How long a round that already holds several requests waits for more before it commits (PostgreSQL's
    /// `commit_delay`): one fsync then covers more appends, so the disk takes fewer page writes a record, for up
    /// to this much more latency on each append. Zero (the default) writes at once. Durability is unchanged: an
    /// append is still answered only after its fsync.
    pub commit_delay: Duration,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            partitions: None,
            retention: Duration::from_secs(7 * 24 * 3600),
            live_topics: HashSet::new(),
            live_records_per_partition: 2048,
            max_batch_records: 4096,
            segment_bytes: 16 << 20,
            reclaim_interval: Duration::from_secs(1),
            background_commit_delay: Duration::from_millis(200),
            commit_delay: Duration::ZERO,
        }
    }
}

/// End offsets of one topic's partitions, where their batches lie, and the signal consumers wait on.
struct TopicState {
    ends: Vec<AtomicU64>,
    index: Vec<PartitionIndex>,
    appended: Notify,
    /// A live topic's records; `None` for the topics on disk.
    recent: Option<Recent>,
}

/// State shared by the handle, the consumers and the writer thread.
struct Shared {
    dir: PathBuf,
    partitions: u32,
    /// The segments readers may read, by number.
    files: RwLock<BTreeMap<u64, Arc<File>>>,
    /// Turns of the blocking reads: at most [`MAX_READS`] at once.
    reads: Semaphore,
    live_topics: HashSet<String>,
    live_records_per_partition: usize,
    topics: RwLock<HashMap<String, Arc<TopicState>>>,
    /// (group, topic, partition) → next offset to read.
    committed: Mutex<HashMap<(String, String, u32), u64>>,
}

impl Shared {
    fn topic(&self, name: &str) -> Arc<TopicState> {
        if let Some(state) = self
            .topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return state.clone();
        }
        let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
        topics
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(TopicState {
                    ends: (0..self.partitions).map(|_| AtomicU64::new(0)).collect(),
                    index: (0..self.partitions)
                        .map(|_| PartitionIndex::default())
                        .collect(),
                    appended: Notify::new(),
                    recent: self
                        .live_topics
                        .contains(name)
                        .then(|| Recent::new(self.partitions, self.live_records_per_partition)),
                })
            })
            .clone()
    }

    /// Refuses what only a topic on disk offers (groups, replay) for a live one.
    fn on_disk(&self, topic: &str) -> Result<(), LogError> {
        if self.live_topics.contains(topic) {
            return Err(LogError::Invalid(format!(
                "{topic} is a live topic, kept in memory for tails only: groups cannot consume it"
            )));
        }
        Ok(())
    }

    /// Segment `number`, unless it was reclaimed.
    fn file(&self, number: u64) -> Option<Arc<File>> {
        self.files
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&number)
            .cloned()
    }

    fn committed(&self, group: &str, topic: &str, partition: u32) -> u64 {
        lock(&self.committed)
            .get(&(group.to_owned(), topic.to_owned(), partition))
            .copied()
            .unwrap_or(0)
    }
}

enum Request {
    Append {
        topic: String,
        records: Vec<OutgoingRecord>,
        reply: oneshot::Sender<Result<Vec<RecordPosition>, LogError>>,
    },
    Commit {
        group: String,
        topic: String,
        partition: u32,
        next_offset: u64,
        /// `None` for a commit in the background, which the writer may hold for a while (see
        /// [`LogOptions::background_commit_delay`]).
        reply: Option<oneshot::Sender<Result<(), LogError>>>,
    },
    Shutdown,
}

impl Request {
    fn weight(&self) -> usize {
        match self {
            Self::Append { records, .. } => records.len(),
            _ => 1,
        }
    }
}

/// Most reads of the segments running at once, each on a blocking thread.
const MAX_READS: usize = 8;

/// The embedded event log (see the module documentation).
pub struct SegmentLog {
    opener: Opener,
    coordinator: Arc<Coordinator>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl SegmentLog {
    /// Opens (or creates) the log in the directory `dir`, converting a log that earlier builds kept in the SQLite
    /// file `<dir>.db` beside it. Fails when the log was created with another partition count, since changing it
    /// would break per-key order.
    pub fn open(dir: &Path, options: LogOptions) -> Result<Self, LogError> {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let converted = legacy::convert(dir, options.partitions)?;
        let recovered = recovery::recover(dir, options.partitions)?;
        if converted {
            legacy::remove_converted(dir);
        }
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            partitions: recovered.partitions,
            files: RwLock::default(),
            reads: Semaphore::new(MAX_READS),
            live_topics: options.live_topics.clone(),
            live_records_per_partition: options.live_records_per_partition,
            topics: RwLock::default(),
            committed: Mutex::default(),
        });
        let writer = writer::Writer::start(recovered, &shared, &options)?;
        let (requests, receiver) = mpsc::channel();
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("event-log-writer".into())
            .spawn(move || writer.run(receiver, writer_shared, options))
            .map_err(|e| LogError::Backend(format!("cannot start the log writer: {e}")))?;
        let opener = Opener { shared, requests };
        let assigned = opener.clone();
        let coordinator = Coordinator::new(
            opener.shared.partitions,
            Box::new(move |key, partition, lease| {
                Box::new(assigned.open(&key.group, &key.topic, partition, Some(lease)))
            }),
        );
        Ok(Self {
            opener,
            coordinator,
            writer: Mutex::new(Some(writer)),
        })
    }

    fn send(&self, request: Request) -> Result<(), LogError> {
        self.opener
            .requests
            .send(request)
            .map_err(|_| LogError::Closed)
    }
}

/// What a consumer needs from the log; the coordinator keeps one to open the consumers it assigns.
#[derive(Clone)]
struct Opener {
    shared: Arc<Shared>,
    requests: mpsc::Sender<Request>,
}

impl Opener {
    /// A consumer of `partition` from `group`'s committed offset, read now: after the previous owner's last commit.
    fn open(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        lease: Option<Lease>,
    ) -> SegmentConsumer {
        SegmentConsumer {
            group: group.to_owned(),
            topic: topic.to_owned(),
            partition,
            position: self.shared.committed(group, topic, partition),
            state: self.shared.topic(topic),
            shared: self.shared.clone(),
            requests: self.requests.clone(),
            _lease: lease,
        }
    }
}

impl Drop for SegmentLog {
    fn drop(&mut self) {
        let _ = self.opener.requests.send(Request::Shutdown);
    }
}

#[async_trait]
impl EventLog for SegmentLog {
    fn partition_count(&self) -> u32 {
        self.opener.shared.partitions
    }

    async fn append_batch(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Result<Vec<RecordPosition>, LogError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let shared = &self.opener.shared;
        if shared.live_topics.contains(topic) {
            let state = shared.topic(topic);
            if let Some(recent) = &state.recent {
                return Ok(recent.append(&state, records));
            }
        }
        let (reply, answer) = oneshot::channel();
        self.send(Request::Append {
            topic: topic.to_owned(),
            records,
            reply,
        })?;
        answer.await.map_err(|_| LogError::Closed)?
    }

    async fn consumer(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Box<dyn PartitionConsumer>, LogError> {
        self.opener.shared.on_disk(topic)?;
        if partition >= self.opener.shared.partitions {
            return Err(LogError::Invalid(format!(
                "partition {partition} does not exist (the log has {})",
                self.opener.shared.partitions
            )));
        }
        Ok(Box::new(self.opener.open(group, topic, partition, None)))
    }

    async fn subscribe(
        &self,
        group: &str,
        topic: &str,
        member: &str,
    ) -> Result<Box<dyn GroupMember>, LogError> {
        self.opener.shared.on_disk(topic)?;
        let key = GroupKey {
            group: group.to_owned(),
            topic: topic.to_owned(),
        };
        Ok(Box::new(self.coordinator.join(key, member)?))
    }

    async fn tail(&self, topic: &str) -> Result<Box<dyn Tail>, LogError> {
        let state = self.opener.shared.topic(topic);
        Ok(Box::new(SegmentTail {
            topic: topic.to_owned(),
            positions: state
                .ends
                .iter()
                .map(|e| e.load(Ordering::Acquire))
                .collect(),
            state,
            shared: self.opener.shared.clone(),
            first: 0,
        }))
    }

    async fn lag(&self, group: &str, topic: &str) -> Result<Vec<u64>, LogError> {
        let state = self.opener.shared.topic(topic);
        Ok((0..self.opener.shared.partitions)
            .map(|p| {
                state.ends[p as usize]
                    .load(Ordering::Acquire)
                    .saturating_sub(self.opener.shared.committed(group, topic, p))
            })
            .collect())
    }

    async fn ping(&self) -> Result<(), LogError> {
        if lock(&self.writer).as_ref().is_none_or(|w| w.is_finished()) {
            return Err(LogError::Closed);
        }
        let dir = &self.opener.shared.dir;
        match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(LogError::Backend(format!(
                "{} is not a directory",
                dir.display()
            ))),
            Err(e) => Err(io_error(dir, e)),
        }
    }

    async fn close(&self) {
        self.coordinator.close();
        let _ = self.opener.requests.send(Request::Shutdown);
        let handle = lock(&self.writer).take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}

/// An I/O failure on `path`, saying which file.
fn io_error(path: &Path, e: std::io::Error) -> LogError {
    LogError::Backend(format!("event log {}: {e}", path.display()))
}
