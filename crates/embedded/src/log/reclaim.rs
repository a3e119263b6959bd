//! Reclaiming the log's space a segment at a time. A segment may go once every group has committed each of its
//! partitions' records, or once it is older than the retention period; records on disk of a topic that has since
//! become live count as expired. A segment held only by a few batches that must stay (dead letters, which no
//! group commits, or a slow group's backlog) has them moved to the segment being written first, as a log-cleaner
//! does, so that a trickle of such records cannot keep the whole log on disk: at most a quarter of a segment is
//! moved, so rewriting never costs more than a quarter of what it frees. A reclaimed segment's batches leave the
//! index, then its file is deleted or, while fewer than [`SPARES`] are kept, renamed to a spare for the writer's
//! next segment. The segment being written is never reclaimed.

use super::{LogOptions, Shared, io_error, segment};
use crate::sqlite::lock;
use chat4all_core::time::now_millis;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Most spare files kept for reuse.
pub(crate) const SPARES: usize = 2;

/// Most segments one pass reclaims, so that a large backlog, once committed, never holds up a round for long.
const SEGMENTS_PER_PASS: usize = 4;

/// A partition's records in a segment: where they end, and their frames' bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Held {
    end: u64,
    bytes: u64,
}

/// What a segment holds, as far as reclaiming it is concerned.
pub(super) struct Summary {
    pub(super) number: u64,
    /// When its newest batch was appended (ms).
    newest: i64,
    /// Each partition of each topic it holds records of (an empty `Held`: none).
    held: HashMap<String, Vec<Held>>,
}

impl Summary {
    pub(super) fn new(number: u64) -> Self {
        Self {
            number,
            newest: i64::MIN,
            held: HashMap::new(),
        }
    }

    /// Counts a batch of `topic`'s `partition` ending at `end`, of `bytes`, appended at `timestamp`.
    pub(super) fn add(
        &mut self,
        topic: &str,
        partition: u32,
        end: u64,
        bytes: u32,
        timestamp: i64,
    ) {
        self.newest = self.newest.max(timestamp);
        let held = match self.held.get_mut(topic) {
            Some(held) => held,
            None => self.held.entry(topic.to_owned()).or_default(),
        };
        let at = partition as usize;
        if held.len() <= at {
            held.resize(at + 1, Held::default());
        }
        held[at].end = held[at].end.max(end);
        held[at].bytes += u64::from(bytes);
    }

    /// Each (topic, partition) it holds records of.
    fn partitions(&self) -> impl Iterator<Item = (&str, u32, Held)> {
        self.held.iter().flat_map(|(topic, held)| {
            held.iter()
                .enumerate()
                .filter(|(_, h)| h.bytes > 0)
                .map(move |(partition, h)| (topic.as_str(), partition as u32, *h))
        })
    }
}

/// What to do with a segment that may be reclaimed.
pub(super) enum Plan {
    /// Reclaim it now.
    Reclaim(Summary),
    /// Move the batches of these partitions to the segment being written, then reclaim it.
    Move(Summary, Vec<(String, u32)>),
}

/// The segments that may be reclaimed, and the spare files.
pub(super) struct Reclaimer {
    dir: PathBuf,
    /// Segments no longer written, oldest first.
    closed: VecDeque<Summary>,
    spares: Vec<PathBuf>,
    last_pass: Instant,
}

impl Reclaimer {
    pub(super) fn new(dir: &Path, closed: Vec<Summary>, spares: Vec<PathBuf>) -> Self {
        Self {
            dir: dir.to_owned(),
            closed: closed.into(),
            spares,
            last_pass: Instant::now(),
        }
    }

    /// Takes in a segment the writer has finished.
    pub(super) fn closed(&mut self, summary: Summary) {
        self.closed.push_back(summary);
    }

    /// A spare file to reuse, if any.
    pub(super) fn take_spare(&mut self) -> Option<PathBuf> {
        self.spares.pop()
    }

    /// When a pass is due, up to [`SEGMENTS_PER_PASS`] segments to reclaim, oldest first, each taken out of the
    /// closed ones; the writer carries out each plan and hands the segment to [`Reclaimer::reclaim`], or back to
    /// [`Reclaimer::keep`] if moving failed.
    pub(super) fn plan(&mut self, shared: &Shared, options: &LogOptions) -> Vec<Plan> {
        if self.closed.is_empty() || self.last_pass.elapsed() < options.reclaim_interval {
            return Vec::new();
        }
        self.last_pass = Instant::now();
        let committed = lowest_commits(shared);
        let expired_before = now_millis() - options.retention.as_millis() as i64;
        let mut plans = Vec::new();
        let mut at = 0;
        while at < self.closed.len() && plans.len() < SEGMENTS_PER_PASS {
            let summary = &self.closed[at];
            let mut staying = Vec::new();
            let mut staying_bytes = 0;
            if summary.newest >= expired_before {
                for (topic, partition, held) in summary.partitions() {
                    let done = options.live_topics.contains(topic)
                        || committed
                            .get(&(topic.to_owned(), partition))
                            .is_some_and(|c| *c >= held.end);
                    if !done {
                        staying.push((topic.to_owned(), partition));
                        staying_bytes += held.bytes;
                    }
                }
            }
            let total: u64 = summary.partitions().map(|(_, _, h)| h.bytes).sum();
            if staying_bytes * 4 > total.max(options.segment_bytes) {
                at += 1; // mostly records that must stay: it waits for their groups or their expiry
                continue;
            }
            let summary = self.closed.remove(at).expect("in range");
            plans.push(if staying.is_empty() {
                Plan::Reclaim(summary)
            } else {
                Plan::Move(summary, staying)
            });
        }
        plans
    }

    /// Puts back a segment whose plan could not be carried out; the next pass tries again.
    pub(super) fn keep(&mut self, summary: Summary) {
        let at = self.closed.partition_point(|s| s.number < summary.number);
        self.closed.insert(at, summary);
    }

    /// Reclaims a segment none of whose batches the index points at any longer (or whose records may go):
    /// its batches leave the index, and its file is deleted or kept as a spare.
    pub(super) fn reclaim(&mut self, summary: Summary, shared: &Shared, options: &LogOptions) {
        for (topic, partition, _) in summary.partitions() {
            shared.topic(topic).index[partition as usize].drop_segment(summary.number);
        }
        let file = shared
            .files
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&summary.number);
        let path = segment::path(&self.dir, summary.number);
        // A reader still holding the file reads it to the end; only a file nobody holds may be written over.
        let reusable = file.and_then(Arc::into_inner).is_some_and(|file| {
            file.metadata()
                .is_ok_and(|m| m.len() >= options.segment_bytes)
        });
        let result = if reusable && self.spares.len() < SPARES {
            let slot = (0..)
                .map(|slot| segment::spare_path(&self.dir, slot))
                .find(|spare| !self.spares.contains(spare))
                .expect("a free slot");
            std::fs::rename(&path, &slot).map(|()| self.spares.push(slot))
        } else {
            std::fs::remove_file(&path)
        };
        match result {
            Ok(()) => tracing::debug!(segment = summary.number, "event log segment reclaimed"),
            // Out of the index and of the readers' files already: only its space is lost until a restart.
            Err(e) => {
                tracing::warn!(error = %io_error(&path, e), "cannot delete a reclaimed event log segment")
            }
        }
    }
}

/// The lowest offset any group has committed, per (topic, partition) some group has committed.
fn lowest_commits(shared: &Shared) -> HashMap<(String, u32), u64> {
    let mut lowest: HashMap<(String, u32), u64> = HashMap::new();
    for ((_, topic, partition), next) in lock(&shared.committed).iter() {
        lowest
            .entry((topic.clone(), *partition))
            .and_modify(|c| *c = (*c).min(*next))
            .or_insert(*next);
    }
    lowest
}
