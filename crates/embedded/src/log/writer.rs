//! The log's one writer thread: drains every pending append and waited commit into one write to the newest
//! segment (group commit; what a round takes is in `round`), answers only after its `fdatasync`, wakes the
//! consumers, starts a new segment when this one is full, and reclaims old segments between rounds.

use super::index::Location;
use super::reclaim::{Plan, Reclaimer, Summary};
use super::recovery::Recovered;
use super::round::{HeldCommits, OffsetKey, Round, TopicRound, fail, gather};
use super::segment::{self, Entry, Frames};
use super::{LogOptions, Request, Shared, TopicState, io_error};
use crate::sqlite::lock;
use chat4all_core::ports::{LogError, RecordPosition, partition_for};
use chat4all_core::time::now_millis;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

/// The writer's state: the segment it writes, the ones it may reclaim, the commits it holds.
pub(super) struct Writer {
    /// The log's directory, synced once a segment's name changes.
    dir: File,
    active: Active,
    reclaimer: Reclaimer,
    held: HeldCommits,
    /// The frames of a round, reused from round to round.
    buffer: Vec<u8>,
}

/// The segment being written.
struct Active {
    number: u64,
    file: Arc<File>,
    /// Bytes written and flushed.
    len: u64,
    /// Where its checkpoint ends: a segment holding nothing more is never left for a new one.
    checkpoint_len: u64,
    summary: Summary,
    /// A write failed, so bytes past `len` may be on disk: the next round starts a new segment rather than write
    /// over them (a shorter frame written there could leave a stale one after it that reads as valid).
    failed: bool,
}

impl Writer {
    /// Publishes what `recovered` holds to the readers and starts a new segment for this run.
    pub(super) fn start(
        recovered: Recovered,
        shared: &Shared,
        options: &LogOptions,
    ) -> Result<Self, LogError> {
        for (topic, ends) in recovered.ends {
            let state = shared.topic(&topic);
            for (slot, end) in state.ends.iter().zip(ends) {
                slot.store(end, Ordering::Release);
            }
        }
        for (topic, partitions) in recovered.batches {
            let state = shared.topic(&topic);
            for (index, batches) in state.index.iter().zip(partitions) {
                batches
                    .into_values()
                    .for_each(|location| index.push(location));
            }
        }
        lock(&shared.committed).extend(recovered.committed);
        let mut closed = Vec::with_capacity(recovered.segments.len());
        {
            let mut files = shared.files.write().unwrap_or_else(|p| p.into_inner());
            for (file, summary) in recovered.segments {
                files.insert(summary.number, file);
                closed.push(summary);
            }
        }
        let dir = File::open(&shared.dir).map_err(|e| io_error(&shared.dir, e))?;
        let mut reclaimer = Reclaimer::new(&shared.dir, closed, recovered.spares);
        let mut buffer = Vec::new();
        let active = begin(
            recovered.next,
            &dir,
            &mut reclaimer,
            &mut buffer,
            shared,
            options,
        )
        .map_err(|e| io_error(&segment::path(&shared.dir, recovered.next), e))?;
        Ok(Self {
            dir,
            active,
            reclaimer,
            held: HeldCommits::default(),
            buffer,
        })
    }

    /// The thread's loop: drains requests into one write each round, flushes once, then answers them all.
    pub(super) fn run(
        mut self,
        requests: Receiver<Request>,
        shared: Arc<Shared>,
        options: LogOptions,
    ) {
        let mut open = true;
        while open {
            let mut batch = Vec::new();
            let first = match self.held.due_in(options.background_commit_delay) {
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
            let round = Round::from_requests(batch, &shared, &mut self.held);
            let flush = !open
                || !round.waiting.is_empty()
                || self.held.due_in(options.background_commit_delay) == Some(Duration::ZERO);
            let offsets = if flush {
                self.held.take()
            } else {
                HashMap::new()
            };
            self.write(round, offsets, &shared, &options);
            self.reclaim(&shared, &options);
        }
        // Answer anything that raced with the shutdown so no caller waits forever.
        for request in requests.try_iter() {
            fail(request, || LogError::Closed);
        }
    }
}

/// Starts segment `number`, in a spare file when there is one, else in a new file of the segments' size: its name
/// is synced in the directory, then its checkpoint is written and flushed, then it is open to readers. A file
/// that could not be started is removed, so the next try starts afresh.
fn begin(
    number: u64,
    dir: &File,
    reclaimer: &mut Reclaimer,
    buffer: &mut Vec<u8>,
    shared: &Shared,
    options: &LogOptions,
) -> io::Result<Active> {
    let path = segment::path(&shared.dir, number);
    let file = match reclaimer.take_spare() {
        Some(spare) => {
            std::fs::rename(&spare, &path)?;
            OpenOptions::new().read(true).write(true).open(&path)
        }
        None => OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|file| file.set_len(options.segment_bytes).map(|()| file)),
    };
    buffer.clear();
    push_checkpoint(&mut Frames::new(number, buffer), shared);
    // Before anything is written to it: were its old name (a spare's, a reclaimed segment's) to come back after a
    // crash, a frame written for this number would not read back under that one.
    let started = file.and_then(|file| {
        dir.sync_all()?;
        file.write_all_at(buffer, 0)?;
        file.sync_data()?;
        Ok(file)
    });
    let file = match started {
        Ok(file) => Arc::new(file),
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
    };
    shared
        .files
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(number, file.clone());
    let len = buffer.len() as u64;
    Ok(Active {
        number,
        file,
        len,
        checkpoint_len: len,
        summary: Summary::new(number),
        failed: false,
    })
}

/// Adds a checkpoint: where the log stands, each topic's ends and every written commit.
fn push_checkpoint(frames: &mut Frames<'_>, shared: &Shared) {
    let ends: Vec<(String, Vec<u64>)> = shared
        .topics
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(topic, state)| {
            let ends = state
                .ends
                .iter()
                .map(|e| e.load(Ordering::Acquire))
                .collect();
            (topic.clone(), ends)
        })
        .collect();
    let committed = lock(&shared.committed).clone();
    frames.push(&Entry::Checkpoint {
        partitions: shared.partitions,
        ends: ends.iter().map(|(t, e)| (t.as_str(), e.clone())).collect(),
        commits: segment::commits_of(&committed),
    });
}

impl Writer {
    /// Writes the round's appends and `offsets` in one write and one flush, then answers. Nothing to write costs
    /// no flush.
    fn write(
        &mut self,
        round: Round,
        offsets: HashMap<OffsetKey, u64>,
        shared: &Shared,
        options: &LogOptions,
    ) {
        if round.appends.is_empty() && offsets.is_empty() {
            return;
        }
        let mut topics: HashMap<String, TopicRound> = HashMap::new();
        let mut positions = Vec::with_capacity(round.appends.len());
        let mut bytes = 0;
        for (topic, records) in round.appends {
            let building = topics
                .entry(topic)
                .or_insert_with_key(|topic| TopicRound::new(shared.topic(topic)));
            let mut written = Vec::with_capacity(records.len());
            for record in &records {
                let partition = partition_for(&record.key, shared.partitions);
                let offset = building.partitions[partition as usize].add(record);
                written.push(RecordPosition { partition, offset });
            }
            bytes += records
                .iter()
                .map(|r| r.payload.len() + r.key.len() + 64)
                .sum::<usize>();
            positions.push(written);
        }
        let result = self
            .make_room(bytes as u64, shared, options)
            .and_then(|()| self.write_frames(&topics, &offsets));
        let placed = match result {
            Ok(placed) => placed,
            Err(e) => {
                self.active.failed = true;
                tracing::error!(error = %e, segment = self.active.number, "event log write failed");
                self.held.restore(offsets);
                let error = || LogError::Backend(e.to_string());
                round
                    .appended
                    .into_iter()
                    .for_each(|r| drop(r.send(Err(error()))));
                round
                    .waiting
                    .into_iter()
                    .for_each(|r| drop(r.send(Err(error()))));
                return;
            }
        };
        lock(&shared.committed).extend(offsets);
        for batch in placed {
            batch.count_in(&mut self.active.summary);
            batch.state.index[batch.partition as usize].push(batch.location);
        }
        for round in topics.into_values() {
            for (slot, building) in round.state.ends.iter().zip(&round.partitions) {
                slot.store(building.end(), Ordering::Release);
            }
            round.state.appended.notify_waiters();
        }
        for (reply, written) in round.appended.into_iter().zip(positions) {
            drop(reply.send(Ok(written)));
        }
        for reply in round.waiting {
            drop(reply.send(Ok(())));
        }
    }

    /// Starts a new segment when about `bytes` more would take this one past its size (or a write to it failed).
    fn make_room(&mut self, bytes: u64, shared: &Shared, options: &LogOptions) -> io::Result<()> {
        let full = self.active.len > self.active.checkpoint_len
            && self.active.len + bytes > options.segment_bytes;
        if !full && !self.active.failed {
            return Ok(());
        }
        if self.active.failed {
            // Frames of the failed write may be on disk past `len`: cut off, none of them can read back later.
            self.active.file.set_len(self.active.len)?;
            self.active.file.sync_all()?;
        }
        let next = begin(
            self.active.number + 1,
            &self.dir,
            &mut self.reclaimer,
            &mut self.buffer,
            shared,
            options,
        )?;
        let done = std::mem::replace(&mut self.active, next);
        self.reclaimer.closed(done.summary);
        Ok(())
    }

    /// Writes the batches of `topics` and `offsets` at the end of the segment and flushes them; returns where each
    /// batch lies, for the index.
    fn write_frames(
        &mut self,
        topics: &HashMap<String, TopicRound>,
        offsets: &HashMap<OffsetKey, u64>,
    ) -> io::Result<Vec<Placed>> {
        let active = &mut self.active;
        self.buffer.clear();
        let mut frames = Frames::new(active.number, &mut self.buffer);
        let now = now_millis();
        let mut placed = Vec::new();
        for (topic, round) in topics {
            for (partition, building) in round.partitions.iter().enumerate() {
                for (first, end, records) in building.batches() {
                    let (body, len) = frames.push(&Entry::Batch {
                        topic,
                        partition: partition as u32,
                        first,
                        end,
                        timestamp: now,
                        records,
                    });
                    let location = Location {
                        first,
                        end,
                        segment: active.number,
                        at: active.len + body as u64,
                        len,
                    };
                    placed.push(Placed {
                        topic: topic.clone(),
                        state: round.state.clone(),
                        partition: partition as u32,
                        location,
                        timestamp: now,
                    });
                }
            }
        }
        if !offsets.is_empty() {
            frames.push(&Entry::Commits(segment::commits_of(offsets)));
        }
        active.append(&self.buffer)?;
        Ok(placed)
    }

    /// Carries out the reclaimer's plans: moves the batches that must stay to the segment being written, then
    /// reclaims their old segment.
    fn reclaim(&mut self, shared: &Shared, options: &LogOptions) {
        for plan in self.reclaimer.plan(shared, options) {
            let summary = match plan {
                Plan::Reclaim(summary) => summary,
                Plan::Move(summary, staying) => {
                    if let Err(e) = self.move_batches(&summary, &staying, shared, options) {
                        self.active.failed = true;
                        tracing::warn!(error = %e, segment = summary.number, "moving event log batches failed; the next pass retries");
                        self.reclaimer.keep(summary);
                        continue;
                    }
                    summary
                }
            };
            self.reclaimer.reclaim(summary, shared, options);
        }
    }

    /// Copies the batches of `staying` partitions in segment `from` to the segment being written, flushes them,
    /// and points the index at the copies.
    fn move_batches(
        &mut self,
        from: &Summary,
        staying: &[(String, u32)],
        shared: &Shared,
        options: &LogOptions,
    ) -> io::Result<()> {
        let file = shared
            .file(from.number)
            .ok_or_else(|| io::Error::other("the segment is no longer open"))?;
        let mut bodies = Vec::new();
        for (topic, partition) in staying {
            let state = shared.topic(topic);
            for location in state.index[*partition as usize].in_segment(from.number) {
                let mut body = vec![0; location.len as usize];
                file.read_exact_at(&mut body, location.at)?;
                bodies.push((state.clone(), *partition, location, body));
            }
        }
        if bodies.is_empty() {
            return Ok(());
        }
        let bytes = bodies.iter().map(|(.., body)| body.len() as u64).sum();
        self.make_room(bytes, shared, options)?;
        let active = &mut self.active;
        self.buffer.clear();
        let mut frames = Frames::new(active.number, &mut self.buffer);
        let mut moved = Vec::with_capacity(bodies.len());
        for (state, partition, old, body) in &bodies {
            let Ok(Entry::Batch {
                topic, timestamp, ..
            }) = segment::decode(body)
            else {
                return Err(io::Error::other(
                    "the index points at a frame that is not a batch",
                ));
            };
            let (at, len) = frames.push_body(body);
            moved.push(Placed {
                topic: topic.to_owned(),
                state: state.clone(),
                partition: *partition,
                location: Location {
                    segment: active.number,
                    at: active.len + at as u64,
                    len,
                    ..*old
                },
                timestamp,
            });
        }
        active.append(&self.buffer)?;
        for batch in moved {
            batch.count_in(&mut active.summary);
            batch.state.index[batch.partition as usize].relocate(batch.location);
        }
        Ok(())
    }
}

/// A batch just written: where it lies, for the index and the segment's summary.
struct Placed {
    topic: String,
    state: Arc<TopicState>,
    partition: u32,
    location: Location,
    timestamp: i64,
}

impl Placed {
    fn count_in(&self, summary: &mut Summary) {
        let Location { end, len, .. } = self.location;
        summary.add(&self.topic, self.partition, end, len, self.timestamp);
    }
}

impl Active {
    /// Writes `frames` after what the segment holds and flushes them.
    fn append(&mut self, frames: &[u8]) -> io::Result<()> {
        self.file.write_all_at(frames, self.len)?;
        self.file.sync_data()?;
        self.len += frames.len() as u64;
        Ok(())
    }
}
