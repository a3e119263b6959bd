//! A batch: the records one round of the writer appends to one partition, stored as one frame of a segment.
//!
//! Its bytes hold each record in turn: its key, its header count and each header's name and value, then its
//! payload; every string and the payload prefixed by its length, counts and lengths as little-endian `u32`.

use chat4all_core::ports::{OutgoingRecord, Record};

/// Most records a batch holds, and the size past which it takes no more: a reader decodes every batch its range
/// overlaps, so a poll from the middle of a large append reads at most a batch of this size beyond what it wants.
const MAX_RECORDS: u64 = 1024;
const MAX_BYTES: usize = 1 << 20;

/// Whether a batch of `records` records and `bytes` bytes is full.
fn is_full(records: u64, bytes: usize) -> bool {
    records >= MAX_RECORDS || bytes >= MAX_BYTES
}

/// A partition's new batches in one round of the writer, from its end offset on; a batch that is full starts the next.
pub(super) struct Building {
    end: u64,
    /// Each batch's first offset and blob.
    batches: Vec<(u64, Vec<u8>)>,
}

impl Building {
    /// Batches from offset `end` on.
    pub(super) fn new(end: u64) -> Self {
        Self {
            end,
            batches: Vec::new(),
        }
    }

    /// Adds `record`; returns its offset.
    pub(super) fn add(&mut self, record: &OutgoingRecord) -> u64 {
        let offset = self.end;
        match self.batches.last_mut() {
            Some((first, blob)) if !is_full(offset - *first, blob.len()) => push(blob, record),
            _ => {
                let mut blob = Vec::new();
                push(&mut blob, record);
                self.batches.push((offset, blob));
            }
        }
        self.end += 1;
        offset
    }

    /// The offset the next record would take.
    pub(super) fn end(&self) -> u64 {
        self.end
    }

    /// Each batch as its first offset, end offset and blob.
    pub(super) fn batches(&self) -> impl Iterator<Item = (u64, u64, &[u8])> {
        let ends = self
            .batches
            .iter()
            .skip(1)
            .map(|(first, _)| *first)
            .chain([self.end]);
        self.batches
            .iter()
            .zip(ends)
            .map(|((first, blob), end)| (*first, end, blob.as_slice()))
    }
}

/// Appends `record` to the blob of a batch being built.
fn push(blob: &mut Vec<u8>, record: &OutgoingRecord) {
    let size = 12
        + record.key.len()
        + record.payload.len()
        + record
            .headers
            .iter()
            .map(|(name, value)| 8 + name.len() + value.len())
            .sum::<usize>();
    blob.reserve(size);
    put(blob, record.key.as_bytes());
    blob.extend_from_slice(&length(record.headers.len()));
    for (name, value) in &record.headers {
        put(blob, name.as_bytes());
        put(blob, value.as_bytes());
    }
    put(blob, &record.payload);
}

fn put(blob: &mut Vec<u8>, bytes: &[u8]) {
    blob.extend_from_slice(&length(bytes.len()));
    blob.extend_from_slice(bytes);
}

fn length(len: usize) -> [u8; 4] {
    u32::try_from(len)
        .expect("a record's parts are far below 4 GiB (appends are bounded upstream)")
        .to_le_bytes()
}

/// Why a stored batch could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("the event log's batch at offset {first_offset} is corrupt: {why}")]
pub(super) struct Corrupt {
    first_offset: u64,
    why: &'static str,
}

/// A batch as stored: where it starts and ends, when it was appended, and its blob.
pub(super) struct Stored<'a> {
    pub(super) partition: u32,
    pub(super) first_offset: u64,
    pub(super) end_offset: u64,
    pub(super) timestamp: i64,
    pub(super) blob: &'a [u8],
}

impl Stored<'_> {
    /// Adds to `out` the batch's records with offsets in `from..until`, in order.
    pub(super) fn read_into(
        &self,
        from: u64,
        until: u64,
        out: &mut Vec<Record>,
    ) -> Result<(), Corrupt> {
        self.read(from, until, out).map_err(|why| Corrupt {
            first_offset: self.first_offset,
            why,
        })
    }

    fn read(&self, from: u64, until: u64, out: &mut Vec<Record>) -> Result<(), &'static str> {
        let mut rest = Reader(self.blob);
        for offset in self.first_offset..self.end_offset.min(until) {
            let keep = offset >= from;
            let key = rest.text()?;
            let count = rest.length()?;
            let mut headers = Vec::with_capacity(if keep { count.min(16) } else { 0 });
            for _ in 0..count {
                let (name, value) = (rest.text()?, rest.text()?);
                if keep {
                    headers.push((name.to_owned(), value.to_owned()));
                }
            }
            let payload = rest.bytes()?;
            if keep {
                out.push(Record {
                    partition: self.partition,
                    offset,
                    key: key.to_owned(),
                    headers,
                    payload: payload.to_vec(),
                    timestamp: self.timestamp,
                });
            }
        }
        if until >= self.end_offset && !rest.0.is_empty() {
            return Err("it holds more records than its offsets span");
        }
        Ok(())
    }
}

/// What is left of encoded bytes to read.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or("it ends inside a number")?;
        self.0 = rest;
        Ok(*head)
    }

    pub(super) fn length(&mut self) -> Result<usize, &'static str> {
        Ok(self.u32()? as usize)
    }

    pub(super) fn u32(&mut self) -> Result<u32, &'static str> {
        self.take().map(u32::from_le_bytes)
    }

    pub(super) fn u64(&mut self) -> Result<u64, &'static str> {
        self.take().map(u64::from_le_bytes)
    }

    fn bytes(&mut self) -> Result<&'a [u8], &'static str> {
        let len = self.length()?;
        if len > self.0.len() {
            return Err("a length runs past its end");
        }
        let (bytes, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(bytes)
    }

    pub(super) fn text(&mut self) -> Result<&'a str, &'static str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| "a key or header is not UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u8) -> OutgoingRecord {
        OutgoingRecord {
            key: format!("key-{i}"),
            headers: vec![
                ("event-type".into(), "test".into()),
                ("n".into(), i.to_string()),
            ],
            payload: vec![i; i as usize * 100],
        }
    }

    fn stored(blob: &[u8]) -> Stored<'_> {
        Stored {
            partition: 1,
            first_offset: 10,
            end_offset: 14,
            timestamp: 99,
            blob,
        }
    }

    #[test]
    fn a_batch_reads_back_the_records_in_the_range_asked() {
        let mut blob = Vec::new();
        let records: Vec<_> = (0..4).map(record).collect();
        for r in &records {
            push(&mut blob, r);
        }
        let mut all = Vec::new();
        stored(&blob).read_into(0, u64::MAX, &mut all).unwrap();
        assert_eq!(all.len(), 4);
        for (read, (written, offset)) in all.iter().zip(records.iter().zip(10..)) {
            assert_eq!(
                (&read.key, &read.headers, &read.payload),
                (&written.key, &written.headers, &written.payload)
            );
            assert_eq!(
                (read.offset, read.partition, read.timestamp),
                (offset, 1, 99)
            );
        }
        let mut middle = Vec::new();
        stored(&blob).read_into(11, 13, &mut middle).unwrap();
        assert_eq!(
            middle.iter().map(|r| r.offset).collect::<Vec<_>>(),
            [11, 12]
        );
        assert_eq!(middle[0].key, "key-1");
    }

    #[test]
    fn a_large_append_is_split_into_full_batches() {
        let mut building = Building::new(100);
        let small = OutgoingRecord {
            key: "k".into(),
            headers: Vec::new(),
            payload: vec![1; 10],
        };
        for i in 0..2500 {
            assert_eq!(building.add(&small), 100 + i);
        }
        let big = OutgoingRecord {
            payload: vec![2; 700 << 10],
            ..small.clone()
        };
        for _ in 0..3 {
            building.add(&big);
        }
        let spans: Vec<(u64, u64)> = building
            .batches()
            .map(|(first, end, _)| (first, end))
            .collect();
        assert_eq!(
            spans,
            [(100, 1124), (1124, 2148), (2148, 2602), (2602, 2603)],
            "1,024 records at most, and no more once past 1 MiB"
        );
        assert_eq!(building.end(), 2603);
        let (first, end, blob) = building.batches().nth(1).unwrap();
        let mut read = Vec::new();
        Stored {
            partition: 0,
            first_offset: first,
            end_offset: end,
            timestamp: 0,
            blob,
        }
        .read_into(0, u64::MAX, &mut read)
        .unwrap();
        assert_eq!(read.len(), 1024);
    }

    #[test]
    fn a_damaged_batch_is_an_error_not_a_panic() {
        let mut blob = Vec::new();
        for i in 0..4 {
            push(&mut blob, &record(i));
        }
        for cut in [0, 3, 10, blob.len() - 1] {
            let err = stored(&blob[..cut]).read_into(0, u64::MAX, &mut Vec::new());
            assert!(err.is_err(), "cut at {cut}");
        }
        let mut longer = blob.clone();
        push(&mut longer, &record(9));
        let err = stored(&longer)
            .read_into(0, u64::MAX, &mut Vec::new())
            .unwrap_err();
        assert!(err.to_string().contains("offset 10"), "{err}");
        let mut huge = blob.clone();
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(
            stored(&huge)
                .read_into(0, u64::MAX, &mut Vec::new())
                .is_err()
        );
    }
}
