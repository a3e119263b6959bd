//! Reading the log: a partition on behalf of a group, or every partition from now on (tail). Readers find the
//! batches in the index, read the segments on a blocking thread, and wait on the topic's append signal, so they
//! never touch the writer's path.

use super::groups::Lease;
use super::index::{Location, PartitionIndex};
use super::segment::{self, Entry};
use super::{Request, Shared, TopicState, batch};
use async_trait::async_trait;
use chat4all_core::ports::{LogError, PartitionConsumer, Record, Tail};
use std::fs::File;
use std::os::unix::fs::FileExt;
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
pub(super) struct SegmentConsumer {
    pub(super) group: String,
    pub(super) topic: String,
    pub(super) partition: u32,
    pub(super) position: u64,
    pub(super) state: Arc<TopicState>,
    pub(super) shared: Arc<Shared>,
    pub(super) requests: mpsc::Sender<Request>,
    /// Ownership of the partition within a subscription; dropping the consumer hands it on.
    pub(super) _lease: Option<Lease>,
}

#[async_trait]
impl PartitionConsumer for SegmentConsumer {
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
        let limit = max.clamp(1, 10_000);
        let state = self.state.clone();
        let (records, next) = self
            .shared
            .read(move |shared| read_records(shared, &state, partition, from, end, limit))
            .await?;
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

impl SegmentConsumer {
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
pub(super) struct SegmentTail {
    pub(super) topic: String,
    pub(super) positions: Vec<u64>,
    pub(super) state: Arc<TopicState>,
    pub(super) shared: Arc<Shared>,
    /// Where the next poll starts, so a busy partition cannot starve the others.
    pub(super) first: usize,
}

#[async_trait]
impl Tail for SegmentTail {
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
        let (state, mut left) = (self.state.clone(), max.clamp(1, 10_000));
        let read = self
            .shared
            .read(move |shared| {
                let mut read = Vec::new();
                for (partition, from, end) in ranges {
                    if left == 0 {
                        break;
                    }
                    let (records, next) = read_records(shared, &state, partition, from, end, left)?;
                    left -= records.len();
                    read.push((partition, next, records));
                }
                Ok(read)
            })
            .await?;
        let mut records = Vec::new();
        for (partition, next, batch) in read {
            self.positions[partition as usize] = next;
            records.extend(batch);
        }
        Ok(records)
    }
}

impl Shared {
    /// Runs `work` on a blocking thread, once one of the [`super::MAX_READS`] turns is free.
    async fn read<T, F>(self: &Arc<Self>, work: F) -> Result<T, LogError>
    where
        T: Send + 'static,
        F: FnOnce(&Shared) -> Result<T, LogError> + Send + 'static,
    {
        let _turn = self.reads.acquire().await.map_err(|_| LogError::Closed)?;
        let shared = self.clone();
        tokio::task::spawn_blocking(move || work(&shared))
            .await
            .map_err(|e| LogError::Backend(format!("a read of the event log failed: {e}")))?
    }
}

/// The batch at `location` and its segment's file, or where the batch was moved to if its segment was reclaimed
/// since; `None` when it was reclaimed with it.
fn find(
    shared: &Shared,
    index: &PartitionIndex,
    mut location: Location,
) -> Option<(Location, Arc<File>)> {
    // Each try finds the batch moved again: a reader would have to stall through whole reclamation passes.
    for _ in 0..3 {
        if let Some(file) = shared.file(location.segment) {
            return Some((location, file));
        }
        let now = *index.covering(location.first, location.first + 1).first()?;
        if now.first != location.first || now.segment == location.segment {
            return None;
        }
        location = now;
    }
    None
}

/// Up to `limit` records of a partition from `from` (below `end`), and the offset to read next. Reclaimed batches
/// are gone from the index, so a read returns the records of its range still kept, and a range that comes back
/// empty was reclaimed whole and the next read starts after it: a reader left behind carries on from the oldest
/// record still kept, never skipping to the end.
fn read_records(
    shared: &Shared,
    state: &TopicState,
    partition: u32,
    from: u64,
    end: u64,
    limit: usize,
) -> Result<(Vec<Record>, u64), LogError> {
    // Offsets are gap-free, so a range of `limit` offsets bounds the read.
    let until = end.min(from.saturating_add(limit as u64));
    let mut records = Vec::new();
    let mut body = Vec::new();
    let index = &state.index[partition as usize];
    for location in index.covering(from, until) {
        // A segment reclaimed since the index was read: its records are gone, as if reclaimed a moment earlier.
        let Some((location, file)) = find(shared, index, location) else {
            continue;
        };
        let path = || segment::path(&shared.dir, location.segment);
        body.resize(location.len as usize, 0);
        file.read_exact_at(&mut body, location.at)
            .map_err(|e| super::io_error(&path(), e))?;
        let corrupt = |why: &str| {
            LogError::Backend(format!(
                "the event log's batch at offset {} of {} is corrupt: {why}",
                location.first,
                path().display()
            ))
        };
        let Entry::Batch {
            timestamp,
            records: blob,
            ..
        } = segment::decode(&body).map_err(corrupt)?
        else {
            return Err(corrupt("the index points at another kind of frame"));
        };
        batch::Stored {
            partition,
            first_offset: location.first,
            end_offset: location.end,
            timestamp,
            blob,
        }
        .read_into(from, until, &mut records)
        .map_err(|e| LogError::Backend(e.to_string()))?;
    }
    let next = records.last().map_or(until, |r| r.offset + 1);
    Ok((records, next))
}
