//! Reading the segments back when the log opens: each partition's end, each group's committed offsets, where every
//! batch lies, and what each segment holds for reclamation. A segment's frames are read up to the first that does
//! not check out, which is where a crash stopped its writer; the writer then starts a new segment, so nothing is
//! ever written after a torn frame. Segments are read in the order written, so a batch the reclaimer moved to a
//! newer segment is found there last, and that copy is the one kept.

use super::index::Location;
use super::reclaim::Summary;
use super::segment::{self, Entry, Scan};
use super::{DEFAULT_PARTITIONS, io_error};
use chat4all_core::ports::LogError;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What the segments hold.
pub(super) struct Recovered {
    pub(super) partitions: u32,
    /// Each topic's partition ends.
    pub(super) ends: HashMap<String, Vec<u64>>,
    /// (group, topic, partition) → next offset to read.
    pub(super) committed: HashMap<(String, String, u32), u64>,
    /// Each topic's partitions' batches, by first offset.
    pub(super) batches: HashMap<String, Vec<BTreeMap<u64, Location>>>,
    /// The segments read, oldest first.
    pub(super) segments: Vec<(Arc<File>, Summary)>,
    /// Files of reclaimed segments kept for reuse.
    pub(super) spares: Vec<PathBuf>,
    /// The number the next segment takes.
    pub(super) next: u64,
}

/// Reads the log in `dir`; `requested` is the partition count asked for, which a log that exists must have.
pub(super) fn recover(dir: &Path, requested: Option<u32>) -> Result<Recovered, LogError> {
    let (numbers, spares) = list(dir)?;
    let mut recovered = Recovered {
        partitions: 0,
        ends: HashMap::new(),
        committed: HashMap::new(),
        batches: HashMap::new(),
        segments: Vec::new(),
        spares,
        next: numbers.last().map_or(1, |last| last + 1),
    };
    let mut stored = None;
    for (i, &number) in numbers.iter().enumerate() {
        let path = segment::path(dir, number);
        let file = File::open(&path).map_err(|e| io_error(&path, e))?;
        let mut scan = Scan::read(&file, number).map_err(|e| io_error(&path, e))?;
        let Some(Ok(Entry::Checkpoint {
            partitions,
            ends,
            commits,
        })) = scan.next_frame().map(|(_, body)| segment::decode(body))
        else {
            if i + 1 == numbers.len() && !scan.holds_frames_after_first() {
                // The writer stopped while starting it: it holds nothing.
                std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
                continue;
            }
            return Err(damaged(&path, "it does not start with a checkpoint"));
        };
        if stored.is_some_and(|count| count != partitions) || partitions == 0 {
            return Err(damaged(&path, "its partition count differs from the log's"));
        }
        stored = Some(partitions);
        recovered.partitions = partitions;
        for (topic, topic_ends) in ends {
            if topic_ends.len() != partitions as usize {
                return Err(damaged(
                    &path,
                    "a checkpoint's ends do not match its partitions",
                ));
            }
            if let Some(batches) = recovered.batches.get_mut(topic) {
                // Batches at or past the checkpoint's end were written by a round whose flush failed: never
                // acknowledged, and their offsets were given again after it.
                for (batches, end) in batches.iter_mut().zip(&topic_ends) {
                    batches.retain(|first, _| first < end);
                }
            }
            recovered.ends.insert(topic.to_owned(), topic_ends);
        }
        recovered.apply(commits);
        let mut summary = Summary::new(number);
        while let Some((at, body)) = scan.next_frame() {
            match segment::decode(body).map_err(|why| damaged(&path, why))? {
                Entry::Batch {
                    topic,
                    partition,
                    first,
                    end,
                    timestamp,
                    ..
                } => {
                    if partition >= partitions || end <= first {
                        return Err(damaged(
                            &path,
                            "a batch's partition or offsets are out of range",
                        ));
                    }
                    let ends = recovered
                        .ends
                        .entry(topic.to_owned())
                        .or_insert_with(|| vec![0; partitions as usize]);
                    let known = &mut ends[partition as usize];
                    if first > *known {
                        tracing::warn!(
                            topic,
                            partition,
                            missing = first - *known,
                            segment = %path.display(),
                            "event log records are missing before this batch"
                        );
                    }
                    *known = (*known).max(end);
                    let len = body.len() as u32;
                    let location = Location {
                        first,
                        end,
                        segment: number,
                        at,
                        len,
                    };
                    let batches = recovered
                        .batches
                        .entry(topic.to_owned())
                        .or_insert_with(|| vec![BTreeMap::new(); partitions as usize]);
                    let earlier = batches[partition as usize].insert(first, location);
                    if earlier.is_some_and(|e| e.end != end) {
                        return Err(damaged(&path, "a batch overlaps another one"));
                    }
                    summary.add(topic, partition, end, len, timestamp);
                }
                Entry::Commits(commits) => recovered.apply(commits),
                Entry::Checkpoint { .. } => {
                    return Err(damaged(&path, "it holds a second checkpoint"));
                }
            }
        }
        // What was read may still be only in the page cache after a crash: on disk before anything builds on it.
        file.sync_data().map_err(|e| io_error(&path, e))?;
        recovered.segments.push((Arc::new(file), summary));
    }
    recovered.partitions = agreed_partitions(stored, requested)?;
    Ok(recovered)
}

impl Recovered {
    fn apply(&mut self, commits: Vec<segment::Commit<'_>>) {
        for (group, topic, partition, next) in commits {
            self.committed
                .insert((group.to_owned(), topic.to_owned(), partition), next);
        }
    }
}

/// The segments' numbers in order, and the spare files.
fn list(dir: &Path) -> Result<(Vec<u64>, Vec<PathBuf>), LogError> {
    let mut numbers = Vec::new();
    let mut spares = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let path = entry.map_err(|e| io_error(dir, e))?.path();
        if let Some(number) = segment::number(&path) {
            numbers.push(number);
        } else if segment::is_spare(&path) {
            spares.push(path);
        }
    }
    numbers.sort_unstable();
    Ok((numbers, spares))
}

/// The log's partition count: the one it was created with (`stored`), which `requested`, when given, must match;
/// for a new log, `requested` or [`DEFAULT_PARTITIONS`].
pub(super) fn agreed_partitions(
    stored: Option<u32>,
    requested: Option<u32>,
) -> Result<u32, LogError> {
    match (stored, requested) {
        (Some(n), Some(requested)) if n != requested => Err(LogError::Invalid(format!(
            "this data directory's event log was created with {n} partitions; it cannot be opened with {requested} \
             (changing the count would break per-conversation order)"
        ))),
        (Some(n), _) => Ok(n),
        (None, requested) => {
            let count = requested.unwrap_or(DEFAULT_PARTITIONS);
            if count == 0 || count > 1024 {
                return Err(LogError::Invalid(
                    "partitions must be between 1 and 1024".into(),
                ));
            }
            Ok(count)
        }
    }
}

fn damaged(path: &Path, why: &str) -> LogError {
    LogError::Backend(format!(
        "the event log's segment {} is damaged: {why}",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::segment::Frames;

    fn write(dir: &Path, number: u64, entries: &[Entry<'_>]) {
        let mut bytes = Vec::new();
        let mut frames = Frames::new(number, &mut bytes);
        for entry in entries {
            frames.push(entry);
        }
        std::fs::write(segment::path(dir, number), bytes).unwrap();
    }

    fn batch(first: u64, end: u64) -> Entry<'static> {
        Entry::Batch {
            topic: "t",
            partition: 0,
            first,
            end,
            timestamp: 1,
            records: b"records",
        }
    }

    #[test]
    fn a_round_whose_flush_failed_gives_way_to_the_next_segments_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = |ends: Vec<(&'static str, Vec<u64>)>| Entry::Checkpoint {
            partitions: 1,
            ends,
            commits: Vec::new(),
        };
        // Segment 1's last batch (2..3) was written, but its flush failed: segment 2 starts at end 2.
        write(
            dir.path(),
            1,
            &[checkpoint(Vec::new()), batch(0, 2), batch(2, 3)],
        );
        write(
            dir.path(),
            2,
            &[checkpoint(vec![("t", vec![2])]), batch(2, 5)],
        );
        let recovered = recover(dir.path(), None).unwrap();
        let kept: Vec<(u64, u64, u64)> = recovered.batches["t"][0]
            .values()
            .map(|b| (b.first, b.end, b.segment))
            .collect();
        assert_eq!(kept, [(0, 2, 1), (2, 5, 2)]);
        assert_eq!(recovered.ends["t"], [5]);
        assert_eq!(recovered.next, 3);
    }

    #[test]
    fn a_segment_without_its_checkpoint_is_empty_when_newest_and_damage_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = Entry::Checkpoint {
            partitions: 2,
            ends: Vec::new(),
            commits: vec![("g", "t", 1, 7)],
        };
        write(dir.path(), 1, &[checkpoint]);
        std::fs::write(segment::path(dir.path(), 2), b"torn").unwrap();
        let recovered = recover(dir.path(), None).unwrap();
        assert_eq!(recovered.partitions, 2);
        assert_eq!(recovered.committed[&("g".into(), "t".into(), 1)], 7);
        assert!(
            !segment::path(dir.path(), 2).exists(),
            "the crash left it empty: removed"
        );
        let refused = recover(dir.path(), Some(3)).err().unwrap();
        assert!(
            refused.to_string().contains("created with 2 partitions"),
            "{refused}"
        );

        std::fs::write(segment::path(dir.path(), 0), b"torn").unwrap();
        let damaged = recover(dir.path(), None).err().unwrap();
        assert!(
            damaged
                .to_string()
                .contains("does not start with a checkpoint"),
            "{damaged}"
        );
    }
}
