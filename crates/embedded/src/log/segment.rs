//! The log's files: a directory of segments, each named by its number and written front to back in frames, only
//! ever appended to. A frame is its body's length and a CRC-32 of the segment's number and the body (both
//! little-endian `u32`), then the body: a batch of one partition's records, commits of group offsets, or a
//! checkpoint. Every segment starts with a checkpoint (the partition count, each partition's end and every
//! committed offset), so the oldest segments can be deleted without losing where offsets stand.
//!
//! Reading a segment stops at its first frame that does not check out: the end of what was written, or a write
//! torn by a crash. A segment's number is in every frame's CRC, so a recycled file's old frames never pass for
//! new ones.

use super::batch::Reader;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes before a frame's body: its length and CRC.
pub(super) const HEAD: usize = 8;

const BATCH: u8 = 1;
const COMMITS: u8 = 2;
const CHECKPOINT: u8 = 3;

/// The file of segment `number`.
pub(super) fn path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.segment"))
}

/// The number of the segment at `path`, if the path names one.
pub(super) fn number(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_suffix(".segment")?;
    (digits.len() == 20).then(|| digits.parse().ok())?
}

/// A reclaimed segment's file kept for reuse: writing over a file of its full size costs the disk no change of
/// its size or blocks, so a flush writes the data alone.
pub(super) fn spare_path(dir: &Path, slot: usize) -> PathBuf {
    dir.join(format!("spare-{slot}"))
}

/// Whether `path` is a spare file.
pub(super) fn is_spare(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("spare-"))
}

/// A partition's committed offset for a group: (group, topic, partition, next offset).
pub(super) type Commit<'a> = (&'a str, &'a str, u32, u64);

/// The commits of a map of (group, topic, partition) to the next offset to read.
pub(super) fn commits_of<'a>(
    offsets: impl IntoIterator<Item = (&'a (String, String, u32), &'a u64)>,
) -> Vec<Commit<'a>> {
    offsets
        .into_iter()
        .map(|((group, topic, partition), next)| {
            (group.as_str(), topic.as_str(), *partition, *next)
        })
        .collect()
}

/// A frame's body.
#[derive(Debug, PartialEq)]
pub(super) enum Entry<'a> {
    /// The records `first..end` of a partition, appended at `timestamp` (ms), encoded as in `batch`.
    Batch {
        topic: &'a str,
        partition: u32,
        first: u64,
        end: u64,
        timestamp: i64,
        records: &'a [u8],
    },
    Commits(Vec<Commit<'a>>),
    /// Where the log stood when the segment started: each topic's partition ends, and every committed offset.
    Checkpoint {
        partitions: u32,
        ends: Vec<(&'a str, Vec<u64>)>,
        commits: Vec<Commit<'a>>,
    },
}

/// Appends frames of one segment to a buffer.
pub(super) struct Frames<'b> {
    number: u64,
    out: &'b mut Vec<u8>,
}

impl<'b> Frames<'b> {
    /// Frames of segment `number`, added to `out`.
    pub(super) fn new(number: u64, out: &'b mut Vec<u8>) -> Self {
        Self { number, out }
    }

    /// Adds `entry`; returns where its body starts in the buffer, and its length.
    pub(super) fn push(&mut self, entry: &Entry<'_>) -> (usize, u32) {
        let start = self.head();
        encode(entry, self.out);
        self.seal(start)
    }

    /// Adds a frame of `body`, an entry already encoded (read from another segment).
    pub(super) fn push_body(&mut self, body: &[u8]) -> (usize, u32) {
        let start = self.head();
        self.out.extend_from_slice(body);
        self.seal(start)
    }

    /// Room for a frame's head; returns where the frame starts.
    fn head(&mut self) -> usize {
        let start = self.out.len();
        self.out.extend_from_slice(&[0; HEAD]);
        start
    }

    /// Fills in the head of the frame at `start`, whose body runs to the end of the buffer.
    fn seal(&mut self, start: usize) -> (usize, u32) {
        let body = start + HEAD;
        let len = u32::try_from(self.out.len() - body).expect("a frame is far below 4 GiB");
        let crc = checksum(self.number, &self.out[body..]);
        self.out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.out[start + 4..body].copy_from_slice(&crc.to_le_bytes());
        (body, len)
    }
}

fn checksum(number: u64, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&number.to_le_bytes());
    hasher.update(body);
    hasher.finalize()
}

fn encode(entry: &Entry<'_>, out: &mut Vec<u8>) {
    match entry {
        Entry::Batch {
            topic,
            partition,
            first,
            end,
            timestamp,
            records,
        } => {
            out.push(BATCH);
            put_text(out, topic);
            out.extend_from_slice(&partition.to_le_bytes());
            out.extend_from_slice(&first.to_le_bytes());
            out.extend_from_slice(&end.to_le_bytes());
            out.extend_from_slice(&timestamp.to_le_bytes());
            out.extend_from_slice(records);
        }
        Entry::Commits(commits) => {
            out.push(COMMITS);
            put_commits(out, commits);
        }
        Entry::Checkpoint {
            partitions,
            ends,
            commits,
        } => {
            out.push(CHECKPOINT);
            out.extend_from_slice(&partitions.to_le_bytes());
            put_count(out, ends.len());
            for (topic, ends) in ends {
                put_text(out, topic);
                put_count(out, ends.len());
                for end in ends {
                    out.extend_from_slice(&end.to_le_bytes());
                }
            }
            put_commits(out, commits);
        }
    }
}

fn put_count(out: &mut Vec<u8>, count: usize) {
    out.extend_from_slice(&u32::try_from(count).expect("counts fit u32").to_le_bytes());
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    put_count(out, text.len());
    out.extend_from_slice(text.as_bytes());
}

fn put_commits(out: &mut Vec<u8>, commits: &[Commit<'_>]) {
    put_count(out, commits.len());
    for (group, topic, partition, next) in commits {
        put_text(out, group);
        put_text(out, topic);
        out.extend_from_slice(&partition.to_le_bytes());
        out.extend_from_slice(&next.to_le_bytes());
    }
}

/// Reads a frame's body.
pub(super) fn decode(body: &[u8]) -> Result<Entry<'_>, &'static str> {
    let (&kind, rest) = body.split_first().ok_or("an empty frame")?;
    let mut rest = Reader(rest);
    let entry = match kind {
        BATCH => Entry::Batch {
            topic: rest.text()?,
            partition: rest.u32()?,
            first: rest.u64()?,
            end: rest.u64()?,
            timestamp: rest.u64()? as i64,
            records: std::mem::take(&mut rest.0),
        },
        COMMITS => Entry::Commits(commits(&mut rest)?),
        CHECKPOINT => {
            let partitions = rest.u32()?;
            let topics = rest.length()?;
            let mut ends = Vec::with_capacity(topics.min(1024));
            for _ in 0..topics {
                let topic = rest.text()?;
                let count = rest.length()?;
                let mut partition_ends = Vec::with_capacity(count.min(1024));
                for _ in 0..count {
                    partition_ends.push(rest.u64()?);
                }
                ends.push((topic, partition_ends));
            }
            Entry::Checkpoint {
                partitions,
                ends,
                commits: commits(&mut rest)?,
            }
        }
        _ => return Err("an unknown kind of frame"),
    };
    if !rest.0.is_empty() {
        return Err("a frame longer than its entry");
    }
    Ok(entry)
}

fn commits<'a>(rest: &mut Reader<'a>) -> Result<Vec<Commit<'a>>, &'static str> {
    let count = rest.length()?;
    let mut commits = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        commits.push((rest.text()?, rest.text()?, rest.u32()?, rest.u64()?));
    }
    Ok(commits)
}

/// A segment's frames as read back: each one's body and where that body starts in the file.
pub(super) struct Scan {
    bytes: Vec<u8>,
    number: u64,
    at: usize,
}

impl Scan {
    /// Reads segment `number` from `file`.
    pub(super) fn read(file: &File, number: u64) -> io::Result<Self> {
        let len = file.metadata()?.len();
        let mut bytes = vec![0; usize::try_from(len).map_err(io::Error::other)?];
        file.read_exact_at(&mut bytes, 0)?;
        Ok(Self {
            bytes,
            number,
            at: 0,
        })
    }

    /// The next frame's body and its position; `None` at the first frame that does not check out.
    pub(super) fn next_frame(&mut self) -> Option<(u64, &[u8])> {
        let (start, end) = self.frame_at(self.at)?;
        self.at = end;
        Some((start as u64, &self.bytes[start..end]))
    }

    /// Whether a frame that checks out follows the first one, whether or not the first does. A segment whose
    /// first frame is damaged yet holds frames after it was written to: it is damaged, not one a crash left empty.
    pub(super) fn holds_frames_after_first(&self) -> bool {
        let Some(head) = self.bytes.get(..HEAD) else {
            return false;
        };
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        self.frame_at(HEAD + len).is_some()
    }

    /// Where the body of the frame at `at` starts and ends, if the frame checks out.
    fn frame_at(&self, at: usize) -> Option<(usize, usize)> {
        let head = self.bytes.get(at..at.checked_add(HEAD)?)?;
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
        let start = at + HEAD;
        let end = start.checked_add(len)?;
        let body = self.bytes.get(start..end)?;
        (len > 0 && checksum(self.number, body) == crc).then_some((start, end))
    }

    /// Where the frames that check out end.
    #[cfg(test)]
    fn end(&self) -> u64 {
        self.at as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<Entry<'static>> {
        vec![
            Entry::Checkpoint {
                partitions: 2,
                ends: vec![("t", vec![5, 0]), ("u", vec![1, 2])],
                commits: vec![("g", "t", 1, 4)],
            },
            Entry::Batch {
                topic: "t",
                partition: 1,
                first: 5,
                end: 7,
                timestamp: 1_700_000_000_000,
                records: b"two records' bytes",
            },
            Entry::Commits(vec![("g", "t", 0, 5), ("h", "u", 1, 2)]),
        ]
    }

    fn written(number: u64) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        let mut frames = Frames::new(number, &mut bytes);
        for entry in entries() {
            frames.push(&entry);
        }
        std::fs::write(path(dir.path(), number), &bytes).unwrap();
        let file = File::open(path(dir.path(), number)).unwrap();
        (dir, file)
    }

    #[test]
    fn frames_read_back_as_written() {
        let (_dir, file) = written(7);
        let mut scan = Scan::read(&file, 7).unwrap();
        let mut read = Vec::new();
        while let Some((_, body)) = scan.next_frame() {
            read.push(format!("{:?}", decode(body).unwrap()));
        }
        let expected: Vec<String> = entries().iter().map(|e| format!("{e:?}")).collect();
        assert_eq!(read, expected);
        assert_eq!(scan.end(), file.metadata().unwrap().len());
    }

    #[test]
    fn reading_stops_at_a_torn_frame_and_at_another_segments_frames() {
        let (dir, file) = written(7);
        let len = file.metadata().unwrap().len();
        let torn = path(dir.path(), 8);
        let bytes = std::fs::read(path(dir.path(), 7)).unwrap();
        std::fs::write(&torn, &bytes[..len as usize - 3]).unwrap();
        let mut scan = Scan::read(&File::open(&torn).unwrap(), 7).unwrap();
        let mut frames = 0;
        while scan.next_frame().is_some() {
            frames += 1;
        }
        assert_eq!(frames, 2, "the torn last frame is not read");

        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        std::fs::write(&torn, &flipped).unwrap();
        let mut scan = Scan::read(&File::open(&torn).unwrap(), 7).unwrap();
        while scan.next_frame().is_some() {}
        assert!(scan.end() < len, "a changed byte fails the CRC");

        let mut checkpoint_flipped = bytes.clone();
        checkpoint_flipped[HEAD] ^= 1;
        std::fs::write(&torn, &checkpoint_flipped).unwrap();
        let scan = Scan::read(&File::open(&torn).unwrap(), 7).unwrap();
        assert!(
            scan.holds_frames_after_first(),
            "frames follow a damaged first one"
        );
        let zeros = Scan::read(&File::open(&torn).unwrap(), 9).unwrap();
        assert!(
            !zeros.holds_frames_after_first(),
            "none under another number"
        );

        let mut other = Scan::read(&file, 8).unwrap();
        assert!(
            other.next_frame().is_none(),
            "segment 7's frames are not segment 8's (a recycled file)"
        );
    }

    #[test]
    fn segment_names_round_trip_and_other_files_are_not_segments() {
        let dir = Path::new("/d");
        assert_eq!(number(&path(dir, 42)), Some(42));
        assert_eq!(number(&spare_path(dir, 0)), None);
        assert!(is_spare(&spare_path(dir, 3)) && !is_spare(&path(dir, 3)));
        assert_eq!(number(Path::new("/d/42.segment")), None);
    }

    #[test]
    fn damaged_bodies_are_errors_not_panics() {
        let mut bytes = Vec::new();
        let (body, _) = Frames::new(1, &mut bytes).push(&entries()[0]);
        let body = &bytes[body..];
        for cut in 0..body.len() {
            assert!(decode(&body[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode(&[9]).is_err());
    }
}
