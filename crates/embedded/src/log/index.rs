//! Where each partition's batches lie in the segments, kept in memory: rebuilt from the files when the log opens,
//! extended by the writer after each flush, moved when the reclaimer moves a batch to a newer segment, trimmed when
//! a segment is reclaimed.

use crate::sqlite::lock;
use std::collections::VecDeque;
use std::sync::Mutex;

/// A batch's place: its offsets `first..end`, its segment, and its frame's body there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Location {
    pub(super) first: u64,
    pub(super) end: u64,
    pub(super) segment: u64,
    /// Where the frame's body starts in the segment, and its length.
    pub(super) at: u64,
    pub(super) len: u32,
}

/// One partition's batches in offset order.
#[derive(Default)]
pub(super) struct PartitionIndex(Mutex<VecDeque<Location>>);

impl PartitionIndex {
    pub(super) fn push(&self, location: Location) {
        lock(&self.0).push_back(location);
    }

    /// The batches holding offsets in `from..until`, in order.
    pub(super) fn covering(&self, from: u64, until: u64) -> Vec<Location> {
        let batches = lock(&self.0);
        let start = batches.partition_point(|b| b.end <= from);
        batches
            .range(start..)
            .take_while(|b| b.first < until)
            .copied()
            .collect()
    }

    /// The batches in `segment`.
    pub(super) fn in_segment(&self, segment: u64) -> Vec<Location> {
        lock(&self.0)
            .iter()
            .filter(|b| b.segment == segment)
            .copied()
            .collect()
    }

    /// Points the batch starting at `moved.first` at its new place.
    pub(super) fn relocate(&self, moved: Location) {
        let mut batches = lock(&self.0);
        let at = batches.partition_point(|b| b.first < moved.first);
        if let Some(batch) = batches.get_mut(at).filter(|b| b.first == moved.first) {
            *batch = moved;
        }
    }

    /// Forgets the batches of `segment`.
    pub(super) fn drop_segment(&self, segment: u64) {
        lock(&self.0).retain(|b| b.segment != segment);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(first: u64, end: u64, segment: u64) -> Location {
        Location {
            first,
            end,
            segment,
            at: 0,
            len: 0,
        }
    }

    #[test]
    fn a_range_finds_the_batches_that_overlap_it() {
        let index = PartitionIndex::default();
        for (first, end, segment) in [(0, 5, 1), (5, 9, 1), (9, 20, 2), (20, 21, 3)] {
            index.push(batch(first, end, segment));
        }
        let firsts = |from, until| -> Vec<u64> {
            index
                .covering(from, until)
                .iter()
                .map(|b| b.first)
                .collect()
        };
        assert_eq!(firsts(0, 100), [0, 5, 9, 20]);
        assert_eq!(firsts(6, 10), [5, 9]);
        assert_eq!(firsts(9, 9), Vec::<u64>::new());
        assert_eq!(firsts(21, 30), Vec::<u64>::new());
        assert_eq!(index.in_segment(1).len(), 2);
        index.relocate(batch(5, 9, 4));
        assert_eq!(index.in_segment(1), [batch(0, 5, 1)], "moved to segment 4");
        index.drop_segment(1);
        assert_eq!(firsts(0, 100), [5, 9, 20], "segment 1 reclaimed");
        assert_eq!(index.covering(6, 7)[0].segment, 4);
    }
}
