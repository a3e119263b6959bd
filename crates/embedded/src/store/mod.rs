//! The embedded store: one SQLite file (WAL, fsync on commit) with versioned migrations.
//!
//! Writes go through one connection, so `seq` assignment is serial per database and gap-free per conversation;
//! reads use a pool of connections that never block the writer.

mod messages;
mod rows;

use crate::sqlite::{self, Readers, Writer};
use async_trait::async_trait;
use chat4all_core::events::MessageAccepted;
use chat4all_core::ids::{
    ConversationId, Email, FileId, IdempotencyKey, MessageId, UploadId, UserId, Username,
};
use chat4all_core::model::{
    Conversation, FileMeta, HistoryPage, HistoryQuery, Message, StatusChange, UploadSession, User,
    UserCredentials,
};
use chat4all_core::ports::{IdempotentRequest, Recorded, StatusWrite, Store, StoreError};
use messages::{record_message, save_status};
use rows::{
    find_file, find_message, idempotent_row, insert_conversation_rows, load_conversation,
    merged_ranges, message_row, parsed, status_column, upload_row, user_row,
};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, ToSql, params, params_from_iter};
use std::path::Path;
use std::sync::Arc;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_initial.sql"),
    include_str!("../../migrations/0002_files.sql"),
    include_str!("../../migrations/0003_status_correlation.sql"),
    include_str!("../../migrations/0004_controls.sql"),
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
    write_duration: metrics::Histogram,
}

impl SqliteStore {
    /// Opens (or creates) the store at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut conn = sqlite::open(path).map_err(backend)?;
        migrate(&mut conn)?;
        drop(conn);
        Ok(Self {
            writer: Writer::open(path).map_err(backend)?,
            readers: Readers::new(path),
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
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
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
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
            .await
    }

    async fn insert_user(&self, user: &User, password_hash: &str) -> Result<(), StoreError> {
        let user = user.clone();
        let hash = password_hash.to_owned();
        self.write(move |conn| {
            let tx = conn.transaction()?;
            let taken: Option<String> = tx
                .query_row(
                    "SELECT CASE WHEN username = ?1 THEN 'username' ELSE 'email' END FROM users
                     WHERE username = ?1 OR (?2 IS NOT NULL AND email = ?2) LIMIT 1",
                    params![user.username.as_str(), user.email.as_ref().map(Email::as_str)],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(field) = taken {
                return Ok(Some(field));
            }
            tx.execute(
                "INSERT INTO users (user_id, username, email, password_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![user.user_id.as_str(), user.username.as_str(), user.email.as_ref().map(Email::as_str), hash, user.created_at],
            )?;
            tx.commit()?;
            Ok(None)
        })
        .await?
        .map_or(Ok(()), |field| Err(StoreError::Conflict(field)))
    }

    async fn user_credentials(
        &self,
        username: &Username,
    ) -> Result<Option<UserCredentials>, StoreError> {
        let username = username.clone();
        self.read(move |conn| {
            conn.prepare_cached("SELECT user_id, username, email, created_at, password_hash FROM users WHERE username = ?1")?
                .query_row([username.as_str()], |row| Ok(UserCredentials { user: user_row(row)?, password_hash: row.get(4)? }))
                .optional()
        })
        .await
    }

    async fn existing_users(&self, user_ids: &[UserId]) -> Result<Vec<UserId>, StoreError> {
        let ids: Vec<String> = user_ids.iter().map(|u| u.as_str().to_owned()).collect();
        self.read(move |conn| {
            let mut found = Vec::new();
            for chunk in ids.chunks(256) {
                let placeholders = vec!["?"; chunk.len()].join(",");
                let mut stmt = conn.prepare(&format!(
                    "SELECT user_id FROM users WHERE user_id IN ({placeholders})"
                ))?;
                for id in stmt.query_map(params_from_iter(chunk), |row| parsed(row, 0))? {
                    found.push(id?);
                }
            }
            Ok(found)
        })
        .await
    }

    async fn insert_conversation(&self, conversation: &Conversation) -> Result<bool, StoreError> {
        let conversation = conversation.clone();
        self.write(move |conn| {
            let tx = conn.transaction()?;
            let exists = tx
                .prepare_cached("SELECT 1 FROM conversations WHERE conversation_id = ?1")?
                .exists([conversation.conversation_id.as_str()])?;
            if exists {
                return Ok(false);
            }
            insert_conversation_rows(&tx, &conversation)?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn conversation(&self, id: &ConversationId) -> Result<Option<Conversation>, StoreError> {
        let id = id.clone();
        self.read(move |conn| load_conversation(conn, id.as_str()))
            .await
    }

    async fn conversations_of(&self, user: &UserId) -> Result<Vec<Conversation>, StoreError> {
        let user = user.clone();
        self.read(move |conn| {
            let ids: Vec<String> = conn
                .prepare_cached(
                    "SELECT c.conversation_id FROM conversations c JOIN members m ON m.conversation_id = c.conversation_id
                     WHERE m.user_id = ?1 ORDER BY c.created_at DESC, c.conversation_id",
                )?
                .query_map([user.as_str()], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            ids.iter().filter_map(|id| load_conversation(conn, id).transpose()).collect()
        })
        .await
    }

    async fn record_messages(
        &self,
        accepted: &[MessageAccepted],
    ) -> Result<Vec<Recorded>, StoreError> {
        let accepted = accepted.to_vec();
        self.write(move |conn| {
            let tx = conn.transaction()?;
            let stored = accepted
                .iter()
                .map(|a| record_message(&tx, a))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            tx.commit()?;
            Ok(stored)
        })
        .await
    }

    async fn save_statuses(&self, writes: &[StatusWrite]) -> Result<Vec<bool>, StoreError> {
        let writes = writes.to_vec();
        self.write(move |conn| {
            let tx = conn.transaction()?;
            let saved = writes
                .iter()
                .map(|w| save_status(&tx, w))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            tx.commit()?;
            Ok(saved)
        })
        .await
    }

    async fn message(&self, id: &MessageId) -> Result<Option<Message>, StoreError> {
        let id = id.clone();
        self.read(move |conn| find_message(conn, id.as_str())).await
    }

    async fn messages(&self, ids: &[MessageId]) -> Result<Vec<Message>, StoreError> {
        let ids: Vec<String> = ids.iter().map(|id| id.as_str().to_owned()).collect();
        self.read(move |conn| {
            let mut found = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(256) {
                let placeholders = vec!["?"; chunk.len()].join(",");
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM {MESSAGES_WITH_FILES} WHERE m.message_id IN ({placeholders})"
                ))?;
                for message in stmt.query_map(params_from_iter(chunk), message_row)? {
                    found.push(message?);
                }
            }
            Ok(found)
        })
        .await
    }

    async fn status_history(&self, id: &MessageId) -> Result<Vec<StatusChange>, StoreError> {
        let id = id.clone();
        self.read(move |conn| {
            conn.prepare_cached(
                // Statuses only move forward, so their rank orders them even when clocks of two processes differ.
                "SELECT status, at, detail, correlation_id FROM status_history WHERE message_id = ?1 ORDER BY
                 CASE status WHEN 'SENT' THEN 0 WHEN 'PENDING' THEN 1 WHEN 'DELIVERED' THEN 2 WHEN 'READ' THEN 3 ELSE 4 END, at",
            )?
                .query_map([id.as_str()], |row| Ok(StatusChange {
                    status: status_column(row, 0)?,
                    at: row.get(1)?,
                    detail: row.get(2)?,
                    correlation_id: row.get(3)?,
                }))?
                .collect()
        })
        .await
    }

    async fn history(
        &self,
        conversation: &ConversationId,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, StoreError> {
        let conversation = conversation.clone();
        let query = *query;
        self.read(move |conn| {
            let mut sql = format!(
                "SELECT {MESSAGE_COLUMNS} FROM {MESSAGES_WITH_FILES} WHERE m.conversation_id = ?"
            );
            let mut args: Vec<Value> = vec![Value::Text(conversation.as_str().to_owned())];
            if let Some(after) = query.after {
                sql.push_str(" AND m.seq > ?");
                args.push(Value::Integer(after as i64));
            }
            if let Some(before) = query.before {
                sql.push_str(" AND m.seq < ?");
                args.push(Value::Integer(before as i64));
            }
            sql.push_str(if query.ascending {
                " ORDER BY m.seq ASC"
            } else {
                " ORDER BY m.seq DESC"
            });
            sql.push_str(" LIMIT ? OFFSET ?");
            args.push(Value::Integer(i64::from(query.limit) + 1));
            args.push(Value::Integer(query.offset.min(i64::MAX as u64) as i64));
            let mut messages: Vec<Message> = conn
                .prepare_cached(&sql)?
                .query_map(
                    params_from_iter(args.iter().map(|v| v as &dyn ToSql)),
                    message_row,
                )?
                .collect::<rusqlite::Result<_>>()?;
            let has_more = messages.len() > query.limit as usize;
            messages.truncate(query.limit as usize);
            Ok(HistoryPage { messages, has_more })
        })
        .await
    }

    async fn reserve_idempotency_key(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
        request: &IdempotentRequest,
        not_before: i64,
    ) -> Result<IdempotentRequest, StoreError> {
        let (user, key, request) = (user.clone(), key.clone(), request.clone());
        self.write(move |conn| {
            let tx = conn.transaction()?;
            tx.prepare_cached(
                "INSERT INTO idempotency_keys (user_id, key, fingerprint, message_id, conversation_id, timestamp, appended, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?6)
                 ON CONFLICT (user_id, key) DO UPDATE SET fingerprint = excluded.fingerprint, message_id = excluded.message_id,
                     conversation_id = excluded.conversation_id, timestamp = excluded.timestamp, appended = 0,
                     created_at = excluded.created_at
                 WHERE idempotency_keys.created_at < ?7",
            )?
            .execute(params![
                user.as_str(),
                key.as_str(),
                request.fingerprint,
                request.message_id.as_str(),
                request.conversation_id.as_str(),
                request.timestamp,
                not_before
            ])?;
            let in_force = tx
                .prepare_cached(
                    "SELECT fingerprint, message_id, conversation_id, timestamp, appended FROM idempotency_keys
                     WHERE user_id = ?1 AND key = ?2",
                )?
                .query_row([user.as_str(), key.as_str()], idempotent_row)?;
            tx.commit()?;
            Ok(in_force)
        })
        .await
    }

    async fn mark_idempotency_key_appended(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
    ) -> Result<(), StoreError> {
        let (user, key) = (user.clone(), key.clone());
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE idempotency_keys SET appended = 1 WHERE user_id = ?1 AND key = ?2",
            )?
            .execute([user.as_str(), key.as_str()])
            .map(drop)
        })
        .await
    }

    async fn purge_idempotency_keys(&self, before: i64) -> Result<u64, StoreError> {
        self.write(move |conn| {
            let tx = conn.transaction()?;
            let messages = tx.execute(
                "DELETE FROM idempotency_keys WHERE created_at < ?1",
                [before],
            )?;
            let files = tx.execute(
                "DELETE FROM file_idempotency_keys WHERE created_at < ?1",
                [before],
            )?;
            tx.commit()?;
            Ok((messages + files) as u64)
        })
        .await
    }

    async fn insert_file(&self, file: &FileMeta) -> Result<(), StoreError> {
        let file = file.clone();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO files (file_id, conversation_id, uploader_id, filename, size_bytes, mimetype, checksum, object_key, uploaded_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                file.file_id.as_str(),
                file.conversation_id.as_str(),
                file.uploader_id.as_str(),
                file.filename,
                file.size_bytes as i64,
                file.mimetype,
                file.checksum,
                file.object_key,
                file.uploaded_at
            ])
            .map(drop)
        })
        .await
    }

    async fn file(&self, id: &FileId) -> Result<Option<FileMeta>, StoreError> {
        let id = id.clone();
        self.read(move |conn| find_file(conn, id.as_str())).await
    }

    async fn reserve_file_idempotency_key(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
        fingerprint: &str,
        file_id: &FileId,
        not_before: i64,
    ) -> Result<(String, FileId), StoreError> {
        let (user, key, fingerprint, file_id) = (
            user.clone(),
            key.clone(),
            fingerprint.to_owned(),
            file_id.clone(),
        );
        self.write(move |conn| {
            let tx = conn.transaction()?;
            tx.prepare_cached(
                "INSERT INTO file_idempotency_keys (user_id, key, fingerprint, file_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (user_id, key) DO UPDATE SET fingerprint = excluded.fingerprint, file_id = excluded.file_id,
                     created_at = excluded.created_at
                 WHERE file_idempotency_keys.created_at < ?6",
            )?
            .execute(params![user.as_str(), key.as_str(), fingerprint, file_id.as_str(), chat4all_core::time::now_millis(), not_before])?;
            let in_force = tx
                .prepare_cached("SELECT fingerprint, file_id FROM file_idempotency_keys WHERE user_id = ?1 AND key = ?2")?
                .query_row([user.as_str(), key.as_str()], |row| Ok((row.get(0)?, parsed(row, 1)?)))?;
            tx.commit()?;
            Ok(in_force)
        })
        .await
    }

    async fn insert_upload(&self, upload: &UploadSession) -> Result<(), StoreError> {
        let upload = upload.clone();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO uploads (upload_id, conversation_id, uploader_id, filename, mimetype, size_bytes, checksum, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                upload.upload_id.as_str(),
                upload.conversation_id.as_str(),
                upload.uploader_id.as_str(),
                upload.filename,
                upload.mimetype,
                upload.size_bytes as i64,
                upload.checksum,
                upload.created_at,
                upload.expires_at
            ])
            .map(drop)
        })
        .await
    }

    async fn upload(&self, id: &UploadId) -> Result<Option<UploadSession>, StoreError> {
        let id = id.clone();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT upload_id, conversation_id, uploader_id, filename, mimetype, size_bytes, checksum, created_at, expires_at
                 FROM uploads WHERE upload_id = ?1",
            )?
            .query_row([id.as_str()], upload_row)
            .optional()
        })
        .await
    }

    async fn add_upload_range(
        &self,
        id: &UploadId,
        start: u64,
        end: u64,
    ) -> Result<Vec<(u64, u64)>, StoreError> {
        let id = id.clone();
        self.write(move |conn| {
            let tx = conn.transaction()?;
            tx.prepare_cached(
                "INSERT OR IGNORE INTO upload_ranges (upload_id, start, end) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![id.as_str(), start as i64, end as i64])?;
            let merged = merged_ranges(&tx, id.as_str())?;
            // Keep the table as small as the merged view, so a many-chunk upload stays cheap.
            tx.prepare_cached("DELETE FROM upload_ranges WHERE upload_id = ?1")?
                .execute([id.as_str()])?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO upload_ranges (upload_id, start, end) VALUES (?1, ?2, ?3)",
            )?;
            for (s, e) in &merged {
                insert.execute(params![id.as_str(), *s as i64, *e as i64])?;
            }
            drop(insert);
            tx.commit()?;
            Ok(merged)
        })
        .await
    }

    async fn upload_ranges(&self, id: &UploadId) -> Result<Vec<(u64, u64)>, StoreError> {
        let id = id.clone();
        self.read(move |conn| merged_ranges(conn, id.as_str()))
            .await
    }

    async fn delete_upload(&self, id: &UploadId) -> Result<(), StoreError> {
        let id = id.clone();
        self.write(move |conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "DELETE FROM upload_ranges WHERE upload_id = ?1",
                [id.as_str()],
            )?;
            tx.execute("DELETE FROM uploads WHERE upload_id = ?1", [id.as_str()])?;
            tx.commit()
        })
        .await
    }

    async fn expired_uploads(&self, now: i64) -> Result<Vec<UploadId>, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached("SELECT upload_id FROM uploads WHERE expires_at <= ?1")?
                .query_map([now], |row| parsed(row, 0))?
                .collect()
        })
        .await
    }

    async fn put_control(&self, key: &str, value: &str, expires_at: i64) -> Result<(), StoreError> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO controls (key, value, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
            )?
            .execute(params![key, value, expires_at])
            .map(drop)
        })
        .await
    }

    async fn controls(&self, prefix: &str, now: i64) -> Result<Vec<(String, String)>, StoreError> {
        let prefix = prefix.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT key, value FROM controls WHERE substr(key, 1, length(?1)) = ?1 AND expires_at > ?2 ORDER BY key",
            )?
            .query_map(params![prefix, now], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
        })
        .await
    }
}
