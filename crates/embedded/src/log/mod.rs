//! The embedded event log: a durable, partitioned, append-only log in one SQLite file.
//!
//! All writes go through one writer thread that drains every pending request into a single transaction, so many
//! concurrent appenders share one fsync (group commit). A transaction stores each partition's new records as one
//! row (`batch`). An append is answered only after its transaction is on disk. Consumers read with their own
//! connections and wait on an in-memory signal for new records; committed offsets live in the same file, so after
//! a restart each group resumes where it committed. Group members of this process share partitions through an
//! in-process coordinator (`groups`). Batches whose records every group has committed, or which are older than
//! the retention period, are deleted a few at a time in the writer's transactions (`reclaim`), always keeping the
//! last batch of a partition so offsets never restart. Live topics (`live`) never reach the file: they are kept in
//! memory for the readers that follow them.

mod batch;
mod groups;
mod live;
mod read;
mod reclaim;
mod writer;

use crate::sqlite::{self, Readers, lock};
use async_trait::async_trait;
use chat4all_core::ports::{
    EventLog, GroupMember, LogError, OutgoingRecord, PartitionConsumer, RecordPosition, Tail,
};
use groups::{Coordinator, GroupKey, Lease};
use live::Recent;
use read::{SqliteConsumer, SqliteTail};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{Notify, oneshot};

/// Partitions per topic of a new log unless told otherwise. One process reads them all (its router takes the
/// partitions that are ready at once as one run), so more partitions buy no parallelism, while the tail of each
/// is a page that every commit appending to it writes again (at 8, a commit wrote about 26 pages for 18 records;
/// docs/results/performance.md has the figures).
pub const DEFAULT_PARTITIONS: u32 = 2;

/// Tuning of the embedded log.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Partitions per topic, fixed when the log file is created; `None`: the count it was created with, or
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
    /// Most records written in one transaction.
    pub max_batch_records: usize,
    /// How often a pass deleting consumed and expired records starts. A pass runs inside the appends' own
    /// transactions, a few hundred records per transaction, so it never holds up the appends for long (at 1,700
    /// messages/s, a pass every 5 s in one transaction of its own took the accept p99 from 5 to 40 ms).
    pub reclaim_interval: Duration,
    /// Longest a commit made in the background waits to be written. The writer holds such commits and writes
    /// them with the appends of the first round after this (or at once with a waited commit), so a batch loop's
    /// commits neither cost a transaction of their own nor add the offsets' page to every commit. A crash replays
    /// at most this much more, which at-least-once allows; records are reclaimed only once their commit is written.
    pub background_commit_delay: Duration,
    /// How long a round that already holds several requests waits for more before it commits (PostgreSQL's
    /// `commit_delay`): one fsync then covers more appends, so the disk takes fewer page writes a record, for up
    /// to this much more latency on each append. Zero (the default) commits at once. Durability is unchanged: an
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
            reclaim_interval: Duration::from_secs(1),
            background_commit_delay: Duration::from_millis(200),
            commit_delay: Duration::ZERO,
        }
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batches (
    topic TEXT NOT NULL, partition INTEGER NOT NULL,
    first_offset INTEGER NOT NULL, end_offset INTEGER NOT NULL, ts INTEGER NOT NULL,
    records BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS batches_by_end ON batches (topic, partition, end_offset);
CREATE TABLE IF NOT EXISTS offsets (
    grp TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, partition)
) WITHOUT ROWID;
";

/// End offsets of one topic's partitions and the signal consumers wait on.
struct TopicState {
    ends: Vec<AtomicU64>,
    appended: Notify,
    /// A live topic's records; `None` for the topics on disk.
    recent: Option<Recent>,
}

/// State shared by the handle, the consumers and the writer thread.
struct Shared {
    partitions: u32,
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

/// The embedded event log (see the module documentation).
pub struct SqliteLog {
    opener: Opener,
    coordinator: Arc<Coordinator>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl SqliteLog {
    /// Opens (or creates) the log in `path`. Fails when the file was created with another partition count, since
    /// changing it would break per-key order.
    pub fn open(path: &Path, options: LogOptions) -> Result<Self, LogError> {
        let mut conn = sqlite::open(path).map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        convert_one_row_a_record(&mut conn).map_err(backend)?;
        let partitions = stored_partitions(&conn, options.partitions)?;
        let shared = Arc::new(Shared {
            partitions,
            live_topics: options.live_topics.clone(),
            live_records_per_partition: options.live_records_per_partition,
            topics: RwLock::default(),
            committed: Mutex::default(),
        });
        load_positions(&conn, &shared).map_err(backend)?;
        let (requests, receiver) = mpsc::channel();
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("event-log-writer".into())
            .spawn(move || writer::run_writer(conn, receiver, writer_shared, options))
            .map_err(|e| LogError::Backend(format!("cannot start the log writer: {e}")))?;
        let opener = Opener {
            shared,
            readers: Readers::new(path),
            requests,
        };
        let assigned = opener.clone();
        let coordinator = Coordinator::new(
            partitions,
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
    readers: Arc<Readers>,
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
    ) -> SqliteConsumer {
        SqliteConsumer {
            group: group.to_owned(),
            topic: topic.to_owned(),
            partition,
            position: self.shared.committed(group, topic, partition),
            state: self.shared.topic(topic),
            readers: self.readers.clone(),
            requests: self.requests.clone(),
            _lease: lease,
        }
    }
}

impl Drop for SqliteLog {
    fn drop(&mut self) {
        let _ = self.opener.requests.send(Request::Shutdown);
    }
}

#[async_trait]
impl EventLog for SqliteLog {
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
        Ok(Box::new(SqliteTail {
            topic: topic.to_owned(),
            positions: state
                .ends
                .iter()
                .map(|e| e.load(Ordering::Acquire))
                .collect(),
            state,
            readers: self.opener.readers.clone(),
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
        self.opener
            .readers
            .read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
            .await
            .map_err(backend)
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

/// The log's partition count: the one it was created with (which `requested`, when given, must match), else
/// `requested` or [`DEFAULT_PARTITIONS`], recorded for the next opening.
fn stored_partitions(conn: &Connection, requested: Option<u32>) -> Result<u32, LogError> {
    let stored: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE name = 'partitions'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(backend)?;
    match (stored.map(|v| v.parse::<u32>()), requested) {
        (Some(Ok(n)), None) => Ok(n),
        (Some(Ok(n)), Some(requested)) if n == requested => Ok(n),
        (Some(Ok(n)), Some(requested)) => Err(LogError::Invalid(format!(
            "this data directory's event log was created with {n} partitions; it cannot be opened with {requested} \
             (changing the count would break per-conversation order)"
        ))),
        (Some(Err(_)), _) => Err(LogError::Backend(
            "the event log's partition count is corrupt".into(),
        )),
        (None, requested) => {
            let count = requested.unwrap_or(DEFAULT_PARTITIONS);
            if count == 0 || count > 1024 {
                return Err(LogError::Invalid(
                    "partitions must be between 1 and 1024".into(),
                ));
            }
            conn.execute(
                "INSERT INTO meta (name, value) VALUES ('partitions', ?1)",
                [count.to_string()],
            )
            .map_err(backend)?;
            Ok(count)
        }
    }
}

/// Converts a log written by a build that stored one row a record (table `records`) to batches, in one
/// transaction: each partition's records become batches as the writer builds them, stamped with the partition's
/// newest record's time, so that none expires earlier than it would have.
fn convert_one_row_a_record(conn: &mut Connection) -> rusqlite::Result<()> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'records')",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(());
    }
    let tx = conn.transaction()?;
    let mut converted = 0u64;
    {
        let mut insert = tx.prepare(batch::INSERT)?;
        let mut flush = |(topic, partition, ts, building): &(String, i64, i64, batch::Building)| {
            for (first, end, blob) in building.batches() {
                insert.execute(params![
                    topic,
                    partition,
                    first as i64,
                    end as i64,
                    ts,
                    blob
                ])?;
            }
            Ok::<_, rusqlite::Error>(())
        };
        let mut select = tx.prepare(
            "SELECT topic, partition, offset, key, headers, payload, ts FROM records ORDER BY topic, partition, offset",
        )?;
        let mut rows = select.query([])?;
        // The partition being converted: its records are gap-free from its oldest kept one.
        let mut current: Option<(String, i64, i64, batch::Building)> = None;
        while let Some(row) = rows.next()? {
            let (topic, partition, offset): (String, i64, i64) =
                (row.get(0)?, row.get(1)?, row.get(2)?);
            let headers: String = row.get(4)?;
            let record = OutgoingRecord {
                key: row.get(3)?,
                headers: serde_json::from_str(&headers).unwrap_or_default(),
                payload: row.get(5)?,
            };
            let ts: i64 = row.get(6)?;
            let same = current.as_ref().is_some_and(|(t, p, _, b)| {
                *t == topic && *p == partition && b.end() == offset as u64
            });
            if !same {
                if let Some(done) = current.take() {
                    flush(&done)?;
                }
                current = Some((topic, partition, ts, batch::Building::new(offset as u64)));
            }
            let (_, _, newest, building) = current.as_mut().expect("set above");
            building.add(&record);
            *newest = (*newest).max(ts);
            converted += 1;
        }
        if let Some(done) = current {
            flush(&done)?;
        }
    }
    tx.execute_batch("DROP TABLE records")?;
    tx.commit()?;
    tracing::info!(
        records = converted,
        "event log converted to batches (one row a commit and partition)"
    );
    Ok(())
}

fn load_positions(conn: &Connection, shared: &Shared) -> rusqlite::Result<()> {
    let mut ends = conn.prepare(
        "SELECT topic, partition, MAX(end_offset) FROM batches GROUP BY topic, partition",
    )?;
    for row in ends.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, u32>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })? {
        let (topic, partition, end) = row?;
        if partition < shared.partitions {
            shared.topic(&topic).ends[partition as usize].store(end as u64, Ordering::Release);
        }
    }
    let mut offsets = conn.prepare("SELECT grp, topic, partition, next_offset FROM offsets")?;
    let mut committed = lock(&shared.committed);
    for row in offsets.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get::<_, u32>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })? {
        let (group, topic, partition, next) = row?;
        committed.insert((group, topic, partition), next as u64);
    }
    Ok(())
}

fn backend(e: rusqlite::Error) -> LogError {
    LogError::Backend(e.to_string())
}
