//! Reclaiming the log's space: records every group has committed, and records past retention, are deleted a
//! little at a time inside the writer's own transactions, so that reclamation neither costs an fsync of its own
//! nor holds up the appends behind it for long. The last record of each partition always stays, so that its end
//! offset survives a restart. Records on disk of a topic that has since become live count as expired.

use super::{LogOptions, Shared};
use crate::sqlite::lock;
use chat4all_core::time::now_millis;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Most records one write batch deletes. A pass over every partition starts each `reclaim_interval`; its work is
/// spread over as many batches as this takes (at 1,700 messages/s, deleting a second's expired notifications in one
/// go, in a transaction of its own, added 2–3 ms to the accept p99).
const BATCH_BUDGET: usize = 512;

/// Where reclamation stands: the (topic, partition) slices the current pass has still to visit.
pub(super) struct Reclaimer {
    pending: Vec<(String, u32)>,
    pass_started: Instant,
}

impl Reclaimer {
    pub(super) fn new() -> Self {
        Self {
            pending: Vec::new(),
            pass_started: Instant::now(),
        }
    }

    /// Deletes up to [`BATCH_BUDGET`] reclaimable records within `tx`, continuing the current pass or starting the
    /// next when it is due. A failure rolls back only the deletions (they are retried by the next pass), never
    /// the batch's appends.
    pub(super) fn run(&mut self, tx: &mut Transaction<'_>, shared: &Shared, options: &LogOptions) {
        if self.pending.is_empty() {
            if self.pass_started.elapsed() < options.reclaim_interval {
                return;
            }
            self.pass_started = Instant::now();
            self.pending = shared
                .topics
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .flat_map(|topic| (0..shared.partitions).map(move |p| (topic.clone(), p)))
                .collect();
        }
        let result = tx.savepoint().and_then(|savepoint| {
            let deleted = self.delete_some(&savepoint, shared, options)?;
            savepoint.commit()?;
            Ok(deleted)
        });
        match result {
            Ok(0) => {}
            Ok(deleted) => tracing::debug!(deleted, "event log reclaimed records"),
            Err(e) => {
                self.pending.clear();
                tracing::warn!(error = %e, "event log reclamation failed; the next pass retries");
            }
        }
    }

    fn delete_some(
        &mut self,
        tx: &Connection,
        shared: &Shared,
        options: &LogOptions,
    ) -> rusqlite::Result<usize> {
        let now = now_millis();
        let mut deleted = 0;
        while let Some((topic, partition)) = self.pending.last() {
            let budget = BATCH_BUDGET - deleted;
            let in_slice = delete_slice(tx, shared, options, topic, *partition, budget, now)?;
            deleted += in_slice;
            if in_slice == budget {
                break; // the slice may hold more: the next batch carries on with it
            }
            self.pending.pop();
        }
        Ok(deleted)
    }
}

/// Deletes at most `budget` of the oldest records of one partition that every group has committed or that are
/// past their topic's retention, keeping the partition's last record.
fn delete_slice(
    tx: &Connection,
    shared: &Shared,
    options: &LogOptions,
    topic: &str,
    partition: u32,
    budget: usize,
    now: i64,
) -> rusqlite::Result<usize> {
    let Some(oldest) = tx
        .prepare_cached(
            "SELECT offset FROM records WHERE topic = ?1 AND partition = ?2 ORDER BY offset LIMIT 1",
        )?
        .query_row(params![topic, partition], |row| row.get::<_, i64>(0))
        .optional()?
    else {
        return Ok(0);
    };
    // Records appended by the transaction in progress are past this end, so they are never candidates.
    let last = shared.topic(topic).ends[partition as usize]
        .load(Ordering::Acquire)
        .saturating_sub(1) as i64;
    let ceiling = last.min(oldest + budget as i64);
    if ceiling <= oldest {
        return Ok(0);
    }
    // A live topic's records on disk (written before it was live) are all expired.
    let retention = if options.live_topics.contains(topic) {
        Duration::ZERO
    } else {
        options.retention
    };
    let expired_before = now - retention.as_millis() as i64;
    // Records are appended in time order: the expired ones are those before the first one that is not, found by
    // reading up from the oldest, so only the rows about to be deleted are visited.
    let first_live: i64 = tx
        .prepare_cached(
            "SELECT offset FROM records WHERE topic = ?1 AND partition = ?2 AND offset < ?3 AND ts >= ?4
             ORDER BY offset LIMIT 1",
        )?
        .query_row(params![topic, partition, ceiling, expired_before], |row| {
            row.get(0)
        })
        .optional()?
        .unwrap_or(ceiling);
    let committed = lock(&shared.committed)
        .iter()
        .filter(|((_, t, p), _)| t == topic && *p == partition)
        .map(|(_, next)| *next as i64)
        .min()
        .unwrap_or(0);
    let below = ceiling.min(first_live.max(committed));
    tx.prepare_cached("DELETE FROM records WHERE topic = ?1 AND partition = ?2 AND offset < ?3")?
        .execute(params![topic, partition, below])
}
