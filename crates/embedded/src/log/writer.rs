//! The log's one writer thread: drains every pending append and commit into one transaction (group commit),
//! answers only after the fsync, wakes the consumers, and reclaims records every group has committed.

use super::{LogOptions, Request, Shared, TopicState};
use crate::sqlite::lock;
use chat4all_core::ports::{LogError, RecordPosition, partition_for};
use chat4all_core::time::now_millis;
use rusqlite::{Connection, params};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
/// The writer thread: drains requests into one transaction each round, fsyncs once, then answers them all.
pub(super) fn run_writer(
    mut conn: Connection,
    mut requests: mpsc::UnboundedReceiver<Request>,
    shared: Arc<Shared>,
    options: LogOptions,
) {
    let mut last_reclaim = Instant::now();
    let mut shutting_down = false;
    while !shutting_down {
        let Some(first) = requests.blocking_recv() else {
            break;
        };
        let mut weight = first.weight();
        let mut batch = vec![first];
        while weight < options.max_batch_records {
            match requests.try_recv() {
                Ok(request) => {
                    weight += request.weight();
                    batch.push(request);
                }
                Err(_) => break,
            }
        }
        if let Some(at) = batch.iter().position(|r| matches!(r, Request::Shutdown)) {
            shutting_down = true;
            batch.truncate(at);
        }
        write_batch(&mut conn, batch, &shared);
        if last_reclaim.elapsed() >= options.reclaim_interval {
            last_reclaim = Instant::now();
            if let Err(e) = reclaim(&mut conn, &shared, &options) {
                tracing::warn!(error = %e, "event log reclamation failed; will retry");
            }
        }
    }
    requests.close();
    // Answer anything that raced with the shutdown so no caller waits forever.
    while let Ok(request) = requests.try_recv() {
        fail(request, || LogError::Closed);
    }
    if let Err(e) = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE") {
        tracing::warn!(error = %e, "event log checkpoint at shutdown failed");
    }
}

fn fail(request: Request, error: impl Fn() -> LogError) {
    match request {
        Request::Append { reply, .. } => drop(reply.send(Err(error()))),
        Request::Commit { reply, .. } => drop(reply.send(Err(error()))),
        Request::Shutdown => {}
    }
}

/// A successful write, answered once the transaction is durable.
enum Done {
    Appended(
        oneshot::Sender<Result<Vec<RecordPosition>, LogError>>,
        Vec<RecordPosition>,
    ),
    Committed(oneshot::Sender<Result<(), LogError>>),
}

fn write_batch(conn: &mut Connection, batch: Vec<Request>, shared: &Shared) {
    if batch.is_empty() {
        return;
    }
    let mut ends: HashMap<String, (Arc<TopicState>, Vec<u64>)> = HashMap::new();
    let mut commits: Vec<((String, String, u32), u64)> = Vec::new();
    let mut done = Vec::with_capacity(batch.len());
    let mut rejected = Vec::new();
    let result = (|| -> rusqlite::Result<()> {
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO records (topic, partition, offset, key, headers, payload, ts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let mut upsert = tx.prepare_cached(
                "INSERT INTO offsets (grp, topic, partition, next_offset) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (grp, topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
            )?;
            let now = now_millis();
            for request in batch {
                match request {
                    Request::Append {
                        topic,
                        records,
                        reply,
                    } => {
                        let (_, topic_ends) = ends.entry(topic.clone()).or_insert_with(|| {
                            let state = shared.topic(&topic);
                            let current = state
                                .ends
                                .iter()
                                .map(|e| e.load(Ordering::Acquire))
                                .collect();
                            (state, current)
                        });
                        let mut positions = Vec::with_capacity(records.len());
                        for record in records {
                            let partition = partition_for(&record.key, shared.partitions);
                            let offset = topic_ends[partition as usize];
                            let headers = serde_json::to_string(&record.headers)
                                .unwrap_or_else(|_| "[]".into());
                            insert.execute(params![
                                topic,
                                partition,
                                offset as i64,
                                record.key,
                                headers,
                                record.payload,
                                now
                            ])?;
                            topic_ends[partition as usize] = offset + 1;
                            positions.push(RecordPosition { partition, offset });
                        }
                        done.push(Done::Appended(reply, positions));
                    }
                    Request::Commit {
                        group,
                        topic,
                        partition,
                        next_offset,
                        reply,
                    } => {
                        if partition >= shared.partitions {
                            rejected.push((reply, format!("partition {partition} does not exist")));
                            continue;
                        }
                        upsert.execute(params![group, topic, partition, next_offset as i64])?;
                        commits.push(((group, topic, partition), next_offset));
                        done.push(Done::Committed(reply));
                    }
                    Request::Shutdown => {}
                }
            }
        }
        tx.commit()
    })();
    for (reply, why) in rejected {
        let _ = reply.send(Err(LogError::Invalid(why)));
    }
    if let Err(e) = result {
        tracing::error!(error = %e, "event log write failed; the batch was rolled back");
        for item in done {
            match item {
                Done::Appended(reply, _) => drop(reply.send(Err(LogError::Backend(e.to_string())))),
                Done::Committed(reply) => drop(reply.send(Err(LogError::Backend(e.to_string())))),
            }
        }
        return;
    }
    {
        let mut committed = lock(&shared.committed);
        committed.extend(commits);
    }
    for (state, topic_ends) in ends.into_values() {
        for (slot, end) in state.ends.iter().zip(topic_ends) {
            slot.store(end, Ordering::Release);
        }
        state.appended.notify_waiters();
    }
    for item in done {
        match item {
            Done::Appended(reply, positions) => drop(reply.send(Ok(positions))),
            Done::Committed(reply) => drop(reply.send(Ok(()))),
        }
    }
}

/// Deletes records that every group has committed, and records past retention; the last record of each
/// partition stays so that its end offset survives a restart.
fn reclaim(conn: &mut Connection, shared: &Shared, options: &LogOptions) -> rusqlite::Result<()> {
    let now = now_millis();
    let mut low_water: HashMap<(String, u32), u64> = HashMap::new();
    for ((_, topic, partition), next) in lock(&shared.committed).iter() {
        let entry = low_water
            .entry((topic.clone(), *partition))
            .or_insert(u64::MAX);
        *entry = (*entry).min(*next);
    }
    let topics: Vec<(String, Arc<TopicState>)> = shared
        .topics
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let tx = conn.transaction()?;
    let mut consumed = tx.prepare_cached(
        "DELETE FROM records WHERE topic = ?1 AND partition = ?2 AND offset < ?3",
    )?;
    // Records are appended in time order, so the expired ones are those before the partition's first record not
    // yet expired: found by reading up from the oldest, which visits only the rows about to be deleted (a filter
    // on `ts` would read every retained record, each run: 1.2 million rows after 5 minutes of notifications).
    let mut expired = tx.prepare_cached(
        "DELETE FROM records WHERE topic = ?1 AND partition = ?2 AND offset < MIN(?3, COALESCE(
            (SELECT offset FROM records WHERE topic = ?1 AND partition = ?2 AND ts >= ?4 ORDER BY offset LIMIT 1),
            ?3))",
    )?;
    let mut deleted = 0;
    for (topic, state) in topics {
        let retention = options
            .retention_by_topic
            .get(&topic)
            .unwrap_or(&options.retention);
        let expired_before = now - retention.as_millis() as i64;
        for partition in 0..shared.partitions {
            let keep_from = state.ends[partition as usize]
                .load(Ordering::Acquire)
                .saturating_sub(1);
            if let Some(&committed) = low_water.get(&(topic.clone(), partition)) {
                deleted +=
                    consumed.execute(params![topic, partition, committed.min(keep_from) as i64])?;
            }
            deleted +=
                expired.execute(params![topic, partition, keep_from as i64, expired_before])?;
        }
    }
    drop((consumed, expired));
    tx.commit()?;
    if deleted > 0 {
        tracing::debug!(deleted, "event log reclaimed consumed records");
    }
    Ok(())
}
