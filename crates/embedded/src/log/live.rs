//! Live topics: streams kept in memory only, for readers that follow them as they happen (tails). A live topic
//! holds changes derived from durable state, such as the notifications pushed to connected clients: a tail starts
//! at the end, so records written to disk would never be read again after a restart, and writing them cost the
//! log as much as the messages themselves. Appends are answered at once; each partition keeps its most recent
//! records, and a tail that falls further behind skips the dropped ones (and says so in the log).

use super::TopicState;
use crate::sqlite::lock;
use chat4all_core::ports::{OutgoingRecord, Record, RecordPosition, partition_for};
use chat4all_core::time::now_millis;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A live topic's most recent records, per partition.
pub(super) struct Recent {
    partitions: Mutex<Vec<VecDeque<Record>>>,
    capacity: usize,
}

impl Recent {
    /// Room for `capacity` records in each of `partitions`.
    pub(super) fn new(partitions: u32, capacity: usize) -> Self {
        Self {
            partitions: Mutex::new((0..partitions).map(|_| VecDeque::new()).collect()),
            capacity: capacity.max(1),
        }
    }

    /// Appends `records` to the live topic `state` (whose records these are), in memory, and wakes its tails.
    pub(super) fn append(
        &self,
        state: &TopicState,
        records: Vec<OutgoingRecord>,
    ) -> Vec<RecordPosition> {
        let timestamp = now_millis();
        let partitions = state.ends.len() as u32;
        let positions = {
            let mut kept = lock(&self.partitions);
            records
                .into_iter()
                .map(|record| {
                    let partition = partition_for(&record.key, partitions);
                    // Offsets move only under this lock, so they stay gap-free and in append order.
                    let end = &state.ends[partition as usize];
                    let offset = end.load(Ordering::Acquire);
                    let queue = &mut kept[partition as usize];
                    if queue.len() == self.capacity {
                        queue.pop_front();
                    }
                    queue.push_back(Record {
                        partition,
                        offset,
                        key: record.key,
                        headers: record.headers,
                        payload: record.payload,
                        timestamp,
                    });
                    end.store(offset + 1, Ordering::Release);
                    RecordPosition { partition, offset }
                })
                .collect()
        };
        state.appended.notify_waiters();
        positions
    }

    /// Up to `max` records after `positions`, visiting partitions in `order`, and moves `positions` past them. A
    /// position older than what a partition keeps skips to the oldest record kept.
    pub(super) fn read(
        &self,
        ends: &[AtomicU64],
        positions: &mut [u64],
        order: impl Iterator<Item = usize>,
        max: usize,
        topic: &str,
    ) -> Vec<Record> {
        let kept = lock(&self.partitions);
        let mut left = max.clamp(1, 10_000);
        let mut records = Vec::new();
        for partition in order {
            let queue = &kept[partition];
            // Under the lock, the end and the records kept agree.
            let end = ends[partition].load(Ordering::Acquire);
            let oldest = end - queue.len() as u64;
            let position = &mut positions[partition];
            if *position < oldest {
                tracing::warn!(
                    topic,
                    partition,
                    skipped = oldest - *position,
                    "a tail fell behind what a live topic keeps in memory; it skips the dropped records"
                );
                *position = oldest;
            }
            let taken = ((end - *position) as usize).min(left);
            let from = (*position - oldest) as usize;
            records.extend(queue.range(from..from + taken).cloned());
            *position += taken as u64;
            left -= taken;
            if left == 0 {
                break;
            }
        }
        records
    }
}
