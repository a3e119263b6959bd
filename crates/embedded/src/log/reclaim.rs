//! Reclaiming the log's space: records every group has committed, and records past retention, are deleted a
//! little at a time inside the writer's own transactions, so that reclamation neither costs an fsync of its own
//! nor holds up the appends behind it for long. Records go a whole batch at a time (see `batch`); the last batch of
//! each partition always stays, so that its end offset survives a restart. Records on disk of a topic that has
//! since become live count as expired.

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
            let budget = BATCH_BUDGET.saturating_sub(deleted);
            if budget == 0 {
                break;
            }
            let slice = delete_slice(tx, shared, options, topic, *partition, budget, now)?;
            deleted += slice.deleted;
            if slice.more {
                break; // the budget stopped it: the next batch carries on with it
            }
            self.pending.pop();
        }
        Ok(deleted)
    }
}

/// What a visit to one partition deleted.
struct Slice {
    /// Records deleted.
    deleted: usize,
    /// Whether the budget left reclaimable records behind.
    more: bool,
}

/// Deletes the oldest batches of one partition whose records every group has committed or are past their topic's
/// retention, about `budget` records of them (at least one batch), keeping the partition's last batch.
fn delete_slice(
    tx: &Connection,
    shared: &Shared,
    options: &LogOptions,
    topic: &str,
    partition: u32,
    budget: usize,
    now: i64,
) -> rusqlite::Result<Slice> {
    let nothing = Slice {
        deleted: 0,
        more: false,
    };
    let Some((oldest_first, oldest_end)) = tx
        .prepare_cached(
            "SELECT first_offset, end_offset FROM batches WHERE topic = ?1 AND partition = ?2
             ORDER BY end_offset LIMIT 1",
        )?
        .query_row(params![topic, partition], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
        })
        .optional()?
    else {
        return Ok(nothing);
    };
    // The last batch ends at the partition's end (the transaction in progress appends past it): it stays.
    let last_end = shared.topic(topic).ends[partition as usize].load(Ordering::Acquire) as i64;
    let ceiling = (oldest_first + budget as i64).max(oldest_end);
    let reach = ceiling.min(last_end - 1);
    if reach < oldest_end {
        return Ok(nothing);
    }
    // A live topic's records on disk (written before it was live) are all expired.
    let retention = if options.live_topics.contains(topic) {
        Duration::ZERO
    } else {
        options.retention
    };
    let expired_before = now - retention.as_millis() as i64;
    // Batches are appended in time order: the expired ones are those before the first one that is not, found by
    // reading up from the oldest, so only the rows about to be deleted are visited.
    let first_live: i64 = tx
        .prepare_cached(
            "SELECT first_offset FROM batches WHERE topic = ?1 AND partition = ?2 AND end_offset <= ?3 AND ts >= ?4
             ORDER BY end_offset LIMIT 1",
        )?
        .query_row(params![topic, partition, reach, expired_before], |row| {
            row.get(0)
        })
        .optional()?
        .unwrap_or(reach);
    let committed = lock(&shared.committed)
        .iter()
        .filter(|((_, t, p), _)| t == topic && *p == partition)
        .map(|(_, next)| *next as i64)
        .min()
        .unwrap_or(0);
    let below = reach.min(first_live.max(committed));
    let deleted = tx
        .prepare_cached(
            "DELETE FROM batches WHERE topic = ?1 AND partition = ?2 AND end_offset <= ?3
             RETURNING end_offset - first_offset",
        )?
        .query_map(params![topic, partition, below], |row| row.get::<_, i64>(0))?
        .sum::<rusqlite::Result<i64>>()? as usize;
    Ok(Slice {
        deleted,
        more: below == reach && reach < last_end - 1,
    })
}
