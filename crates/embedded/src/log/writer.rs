//! The log's one writer thread: drains every pending append and commit into one transaction (group commit),
//! answers only after the fsync, wakes the consumers, and reclaims space in the same transactions.

use super::reclaim::Reclaimer;
use super::{LogOptions, Request, Shared, TopicState};
use crate::sqlite::lock;
use chat4all_core::ports::{LogError, RecordPosition, partition_for};
use chat4all_core::time::now_millis;
use rusqlite::{Connection, params};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::{mpsc, oneshot};
/// The writer thread: drains requests into one transaction each round, fsyncs once, then answers them all.
pub(super) fn run_writer(
    mut conn: Connection,
    mut requests: mpsc::UnboundedReceiver<Request>,
    shared: Arc<Shared>,
    options: LogOptions,
) {
    let mut reclaimer = Reclaimer::new();
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
        write_batch(&mut conn, batch, &shared, |tx| {
            reclaimer.run(tx, &shared, &options)
        });
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

/// Writes `batch` in one transaction, running `before_commit` in it last.
fn write_batch(
    conn: &mut Connection,
    batch: Vec<Request>,
    shared: &Shared,
    before_commit: impl FnOnce(&mut rusqlite::Transaction<'_>),
) {
    if batch.is_empty() {
        return;
    }
    let mut ends: HashMap<String, (Arc<TopicState>, Vec<u64>)> = HashMap::new();
    let mut commits: Vec<((String, String, u32), u64)> = Vec::new();
    let mut done = Vec::with_capacity(batch.len());
    let mut rejected = Vec::new();
    let result = (|| -> rusqlite::Result<()> {
        let mut tx = conn.transaction()?;
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
        before_commit(&mut tx);
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
