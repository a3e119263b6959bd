//! Reading the log: a partition on behalf of a group, or every partition from now on (tail). Readers use their own
//! connections and wait on the topic's append signal, so they never touch the writer's path.

use super::groups::Lease;
use super::{Request, TopicState, backend, batch};
use crate::sqlite::Readers;
use async_trait::async_trait;
use chat4all_core::ports::{LogError, PartitionConsumer, Record, Tail};
use rusqlite::types::Type;
use rusqlite::{Connection, params};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

impl TopicState {
    /// Waits until `ready` holds for the partitions' end offsets, or `deadline` passes (false).
    async fn wait_for(&self, deadline: Instant, ready: impl Fn(&[AtomicU64]) -> bool) -> bool {
        loop {
            // Registered before checking, so an append between the check and the wait still wakes us.
            let appended = self.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            if ready(&self.ends) {
                return true;
            }
            if tokio::time::timeout_at(deadline, appended).await.is_err() {
                return false;
            }
        }
    }
}

/// Reads one partition for one group.
pub(super) struct SqliteConsumer {
    pub(super) group: String,
    pub(super) topic: String,
    pub(super) partition: u32,
    pub(super) position: u64,
    pub(super) state: Arc<TopicState>,
    pub(super) readers: Arc<Readers>,
    pub(super) requests: mpsc::Sender<Request>,
    /// Ownership of the partition within a subscription; dropping the consumer hands it on.
    pub(super) _lease: Option<Lease>,
}

#[async_trait]
impl PartitionConsumer for SqliteConsumer {
    fn partition(&self) -> u32 {
        self.partition
    }

    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, LogError> {
        let (partition, from) = (self.partition, self.position);
        let deadline = Instant::now() + wait;
        let ready = |ends: &[AtomicU64]| from < ends[partition as usize].load(Ordering::Acquire);
        if !self.state.wait_for(deadline, ready).await {
            return Ok(Vec::new());
        }
        let end = self.state.ends[partition as usize].load(Ordering::Acquire);
        let (topic, limit) = (self.topic.clone(), max.clamp(1, 10_000) as i64);
        let (records, next) = self
            .readers
            .read(move |conn| read_records(conn, &topic, partition, from, end, limit))
            .await
            .map_err(backend)?;
        self.position = next;
        Ok(records)
    }

    async fn commit(&mut self, next_offset: u64) -> Result<(), LogError> {
        let (reply, answer) = oneshot::channel();
        self.request_commit(next_offset, Some(reply))?;
        answer.await.map_err(|_| LogError::Closed)?
    }

    fn commit_in_background(&mut self, next_offset: u64) -> Result<(), LogError> {
        // The writer handles requests in order, so a later waited commit lands after this one.
        self.request_commit(next_offset, None)
    }
}

impl SqliteConsumer {
    /// Queues the group's commit of `next_offset` with the writer, which answers `reply` once it is durable.
    fn request_commit(
        &self,
        next_offset: u64,
        reply: Option<oneshot::Sender<Result<(), LogError>>>,
    ) -> Result<(), LogError> {
        let request = Request::Commit {
            group: self.group.clone(),
            topic: self.topic.clone(),
            partition: self.partition,
            next_offset,
            reply,
        };
        self.requests.send(request).map_err(|_| LogError::Closed)
    }
}

/// Reads every partition of a topic from the end it saw when it started: from the file, or from memory for a live
/// topic.
pub(super) struct SqliteTail {
    pub(super) topic: String,
    pub(super) positions: Vec<u64>,
    pub(super) state: Arc<TopicState>,
    pub(super) readers: Arc<Readers>,
    /// Where the next poll starts, so a busy partition cannot starve the others.
    pub(super) first: usize,
}

#[async_trait]
impl Tail for SqliteTail {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, LogError> {
        let deadline = Instant::now() + wait;
        let positions = &self.positions;
        let behind = |ends: &[AtomicU64]| {
            positions
                .iter()
                .zip(ends)
                .any(|(at, end)| *at < end.load(Ordering::Acquire))
        };
        if !self.state.wait_for(deadline, behind).await {
            return Ok(Vec::new());
        }
        let (count, first) = (self.positions.len(), self.first);
        self.first = (first + 1) % count;
        let order = (0..count).map(move |i| (first + i) % count);
        if let Some(recent) = &self.state.recent {
            let ends = &self.state.ends;
            return Ok(recent.read(ends, &mut self.positions, order, max, &self.topic));
        }
        let ranges: Vec<(u32, u64, u64)> = order
            .map(|p| {
                let end = self.state.ends[p].load(Ordering::Acquire);
                (p as u32, self.positions[p], end)
            })
            .filter(|(_, from, end)| from < end)
            .collect();
        let (topic, mut left) = (self.topic.clone(), max.clamp(1, 10_000));
        let read = self
            .readers
            .read(move |conn| {
                let mut read = Vec::new();
                for (partition, from, end) in ranges {
                    if left == 0 {
                        break;
                    }
                    let (records, next) =
                        read_records(conn, &topic, partition, from, end, left as i64)?;
                    left -= records.len();
                    read.push((partition, next, records));
                }
                Ok(read)
            })
            .await
            .map_err(backend)?;
        let mut records = Vec::new();
        for (partition, next, batch) in read {
            self.positions[partition as usize] = next;
            records.extend(batch);
        }
        Ok(records)
    }
}

/// Up to `limit` records of a partition from `from` (below `end`), and the offset to read next. Records are
/// reclaimed from the oldest, so a range that comes back empty was reclaimed whole and the next read starts after
/// it: a reader left behind by retention carries on from the oldest record still kept, never skipping to the end.
fn read_records(
    conn: &Connection,
    topic: &str,
    partition: u32,
    from: u64,
    end: u64,
    limit: i64,
) -> rusqlite::Result<(Vec<Record>, u64)> {
    // Offsets are gap-free, so a range of `limit` offsets bounds the read. The batches come in the order of the
    // index the search runs on (equal topic and partition, then a range of end offsets), and reading stops at the
    // first one past the range. No ORDER BY: with it, SQLite prepared the statement again at most executions.
    let until = end.min(from.saturating_add(limit.max(0) as u64));
    let mut stmt = conn.prepare_cached(
        "SELECT first_offset, end_offset, ts, records FROM batches INDEXED BY batches_by_end
         WHERE topic = ?1 AND partition = ?2 AND end_offset > ?3",
    )?;
    let mut rows = stmt.query(params![topic, partition, from as i64])?;
    let mut records = Vec::new();
    while let Some(row) = rows.next()? {
        let first_offset = row.get::<_, i64>(0)? as u64;
        if first_offset >= until {
            break;
        }
        let stored = batch::Stored {
            partition,
            first_offset,
            end_offset: row.get::<_, i64>(1)? as u64,
            timestamp: row.get(2)?,
            blob: row.get_ref(3)?.as_blob()?,
        };
        stored
            .read_into(from, until, &mut records)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(3, Type::Blob, Box::new(e)))?;
    }
    let next = records.last().map_or(until, |r| r.offset + 1);
    Ok((records, next))
}
