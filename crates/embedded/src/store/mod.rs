//! The embedded store: one SQLite file (WAL, fsync on commit) with versioned migrations.
//!
//! Writes go through one connection, so `seq` assignment is serial per database and gap-free per conversation;
//! reads use a pool of connections that never block the writer.
//!
//! A statement run for every message that changes one row is written `OR FAIL` and without `RETURNING`: SQLite
//! then gives it no statement journal, which would copy every page it touches once more (`messages.rs`). The
//! writer checkpoints the WAL in long windows for the same reason, pages rewritten by many commits
//! (`CHECKPOINT_PAGES` in `crate::sqlite`).

mod accounts;
mod control;
mod conversations;
mod files;
mod groups;
mod idempotency;
mod identities;
mod messages;
mod order;
mod receipts;
mod rows;

use crate::sqlite::{self, Readers, Writer};
use async_trait::async_trait;
use chat4all_core::ports::{Backend, StoreError};
use rusqlite::Connection;
use std::path::Path;
use std::sync::Arc;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_initial.sql"),
    include_str!("../../migrations/0002_files.sql"),
    include_str!("../../migrations/0003_status_correlation.sql"),
    include_str!("../../migrations/0004_controls.sql"),
    include_str!("../../migrations/0005_groups.sql"),
    include_str!("../../migrations/0006_identities.sql"),
    include_str!("../../migrations/0007_seq_from_index.sql"),
    include_str!("../../migrations/0008_order_merged_in_runs.sql"),
];

/// A message row with its attachment (`f.*` is NULL when there is none).
const MESSAGE_COLUMNS: &str = "m.message_id, m.conversation_id, m.seq, m.sender_id, m.recipient_id, m.content, m.status,
     m.timestamp, m.delivered_at, m.read_at, m.failure_reason, f.file_id, f.conversation_id, f.uploader_id, f.filename,
     f.size_bytes, f.mimetype, f.checksum, f.object_key, f.uploaded_at";
const MESSAGES_WITH_FILES: &str = "messages m LEFT JOIN files f ON f.file_id = m.file_id";
const FILE_COLUMNS: &str = "f.file_id, f.conversation_id, f.uploader_id, f.filename, f.size_bytes, f.mimetype, f.checksum, f.object_key, f.uploaded_at";

/// SQLite implementation of the store port.
pub struct SqliteStore {
    writer: Arc<Writer>,
    readers: Arc<Readers>,
    merge_every: u64,
    write_duration: metrics::Histogram,
}

impl SqliteStore {
    /// Opens (or creates) the store at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_merging_every(path, order::MERGE_EVERY)
    }

    /// [`Self::open`], moving a slice of the conversations' recent messages into their sorted order every
    /// `merge_every` messages instead of every thousand or so (tests use a few, to cross runs often).
    pub fn open_merging_every(path: &Path, merge_every: u64) -> Result<Self, StoreError> {
        let mut conn = sqlite::open(path).map_err(backend)?;
        migrate(&mut conn)?;
        // What the last process left recent starts the sorted part, so a restart begins with nothing to scan.
        let tx = conn.transaction().map_err(backend)?;
        order::merge_all(&tx).map_err(backend)?;
        tx.commit().map_err(backend)?;
        drop(conn);
        Ok(Self {
            writer: Writer::open(path).map_err(backend)?,
            readers: Readers::new(path),
            merge_every: merge_every.max(1),
            // Every role of the process writes through it, hence the process's service label.
            write_duration: metrics::histogram!("store_write_duration_seconds", "service" => "chat4all", "backend" => "sqlite"),
        })
    }

    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.readers.read(work).await.map_err(backend)
    }

    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let started = std::time::Instant::now();
        let result = self.writer.write(work).await.map_err(backend);
        self.write_duration.record(started.elapsed().as_secs_f64());
        result
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let applied = conn
        .pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
        .map_err(backend)? as usize;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Backend(format!(
            "the store's schema is version {applied}, newer than this build knows ({}); upgrade chat4all",
            MIGRATIONS.len()
        )));
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction().map_err(backend)?;
        tx.execute_batch(sql).map_err(backend)?;
        tx.pragma_update(None, "user_version", (version + 1) as i64)
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
        tracing::info!(version = version + 1, "store migration applied");
    }
    Ok(())
}

fn backend(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(code, _)
            if code.code == rusqlite::ErrorCode::DatabaseBusy =>
        {
            StoreError::Unavailable(e.to_string())
        }
        other => StoreError::Backend(other.to_string()),
    }
}

#[async_trait]
impl Backend for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
            .await
    }
}
