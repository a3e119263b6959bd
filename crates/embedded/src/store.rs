//! The embedded store: one SQLite file (WAL, fsync on commit) with versioned migrations.
//!
//! Writes go through one connection, so `seq` assignment is serial per database and gap-free per conversation;
//! reads use a pool of connections that never block the writer.

use crate::sqlite::{self, Readers, Writer};
use async_trait::async_trait;
use chat4all_core::events::{MessageAccepted, StatusUpdate};
use chat4all_core::ids::{
    ConversationId, Email, IdempotencyKey, InvalidValue, MessageId, UserId, Username,
};
use chat4all_core::model::{
    Conversation, ConversationKind, HistoryPage, HistoryQuery, Message, StatusChange, Transition,
    User, UserCredentials,
};
use chat4all_core::ports::{IdempotentRequest, Store, StoreError};
use chat4all_core::status::MessageStatus;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, ToSql, params, params_from_iter};
use std::path::Path;
use std::sync::Arc;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[include_str!("../migrations/0001_initial.sql")];

const MESSAGE_COLUMNS: &str = "message_id, conversation_id, seq, sender_id, recipient_id, content, status, timestamp, delivered_at, read_at, failure_reason";

/// SQLite implementation of the store port.
pub struct SqliteStore {
    writer: Arc<Writer>,
    readers: Arc<Readers>,
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
        self.writer.write(work).await.map_err(backend)
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

/// Reads a validated id column.
fn parsed<T: TryFrom<String, Error = InvalidValue>>(
    row: &Row<'_>,
    index: usize,
) -> rusqlite::Result<T> {
    let raw: String = row.get(index)?;
    T::try_from(raw).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn status_column(row: &Row<'_>, index: usize) -> rusqlite::Result<MessageStatus> {
    let raw: String = row.get(index)?;
    raw.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, e.into())
    })
}

fn message_row(row: &Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        message_id: parsed(row, 0)?,
        conversation_id: parsed(row, 1)?,
        seq: row.get::<_, i64>(2)? as u64,
        sender_id: parsed(row, 3)?,
        recipient_id: row.get(4)?,
        content: row.get(5)?,
        status: status_column(row, 6)?,
        timestamp: row.get(7)?,
        delivered_at: row.get(8)?,
        read_at: row.get(9)?,
        failure_reason: row.get(10)?,
    })
}

fn user_row(row: &Row<'_>) -> rusqlite::Result<User> {
    let email: Option<String> = row.get(2)?;
    Ok(User {
        user_id: parsed(row, 0)?,
        username: parsed(row, 1)?,
        email: email.map(Email::try_from).transpose().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e))
        })?,
        created_at: row.get(3)?,
    })
}

fn find_message(conn: &Connection, id: &str) -> rusqlite::Result<Option<Message>> {
    conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE message_id = ?1"
    ))?
    .query_row([id], message_row)
    .optional()
}

fn load_conversation(conn: &Connection, id: &str) -> rusqlite::Result<Option<Conversation>> {
    let head = conn
        .prepare_cached("SELECT conversation_id, kind, name, created_at, created_by FROM conversations WHERE conversation_id = ?1")?
        .query_row([id], |row| {
            let kind: String = row.get(1)?;
            Ok(Conversation {
                conversation_id: parsed(row, 0)?,
                kind: if kind == "group" { ConversationKind::Group } else { ConversationKind::Direct },
                name: row.get(2)?,
                members: Vec::new(),
                created_at: row.get(3)?,
                created_by: parsed(row, 4)?,
            })
        })
        .optional()?;
    let Some(mut conversation) = head else {
        return Ok(None);
    };
    let mut members = conn.prepare_cached(
        "SELECT user_id FROM members WHERE conversation_id = ?1 ORDER BY joined_at, user_id",
    )?;
    conversation.members = members
        .query_map([id], |row| parsed(row, 0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(conversation))
}

fn insert_conversation_rows(
    conn: &Connection,
    conversation: &Conversation,
    last_seq: u64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO conversations (conversation_id, kind, name, created_by, created_at, last_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        conversation.conversation_id.as_str(),
        conversation.kind.as_str(),
        conversation.name,
        conversation.created_by.as_str(),
        conversation.created_at,
        last_seq as i64
    ])?;
    let mut member = conn.prepare_cached(
        "INSERT INTO members (conversation_id, user_id, joined_at) VALUES (?1, ?2, ?3)",
    )?;
    for user in &conversation.members {
        member.execute(params![
            conversation.conversation_id.as_str(),
            user.as_str(),
            conversation.created_at
        ])?;
    }
    Ok(())
}

/// Stores one accepted message in the open transaction, or returns the copy already stored.
fn record_message(conn: &Connection, accepted: &MessageAccepted) -> rusqlite::Result<Message> {
    if let Some(existing) = find_message(conn, accepted.message_id.as_str())? {
        return Ok(existing);
    }
    let next_seq: Option<i64> = conn
        .prepare_cached("UPDATE conversations SET last_seq = last_seq + 1 WHERE conversation_id = ?1 RETURNING last_seq")?
        .query_row([accepted.conversation_id.as_str()], |r| r.get(0))
        .optional()?;
    let seq = match next_seq {
        Some(seq) => seq as u64,
        None => {
            // Normally the api creates the conversation first; a record injected by other means still gets one.
            let conversation = Conversation {
                conversation_id: accepted.conversation_id.clone(),
                kind: ConversationKind::Direct,
                name: None,
                members: vec![accepted.sender_id.clone()],
                created_at: accepted.timestamp,
                created_by: accepted.sender_id.clone(),
            };
            insert_conversation_rows(conn, &conversation, 1)?;
            1
        }
    };
    conn.prepare_cached(
        "INSERT INTO messages (message_id, conversation_id, seq, sender_id, recipient_id, content, status, timestamp)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'SENT', ?7)",
    )?
    .execute(params![
        accepted.message_id.as_str(),
        accepted.conversation_id.as_str(),
        seq as i64,
        accepted.sender_id.as_str(),
        accepted.recipient_id,
        accepted.content,
        accepted.timestamp
    ])?;
    conn.prepare_cached(
        "INSERT INTO status_history (message_id, status, at) VALUES (?1, 'SENT', ?2)",
    )?
    .execute(params![accepted.message_id.as_str(), accepted.timestamp])?;
    Ok(Message {
        message_id: accepted.message_id.clone(),
        conversation_id: accepted.conversation_id.clone(),
        seq,
        sender_id: accepted.sender_id.clone(),
        recipient_id: accepted.recipient_id.clone(),
        content: accepted.content.clone(),
        status: MessageStatus::Sent,
        timestamp: accepted.timestamp,
        delivered_at: None,
        read_at: None,
        failure_reason: None,
    })
}

/// Applies one status change in the open transaction, if the forward-only rule allows it.
fn apply_status(conn: &Connection, update: &StatusUpdate) -> rusqlite::Result<Transition> {
    let Some(mut message) = find_message(conn, update.message_id.as_str())? else {
        return Ok(Transition::UnknownMessage);
    };
    if !message.status.can_advance_to(update.status) {
        return Ok(Transition::Refused(message));
    }
    message.status = update.status;
    match update.status {
        MessageStatus::Delivered => {
            message.delivered_at = Some(update.at);
            message.failure_reason = None;
        }
        MessageStatus::Read => {
            message.delivered_at.get_or_insert(update.at);
            message.read_at = Some(update.at);
            message.failure_reason = None;
        }
        MessageStatus::Pending | MessageStatus::Failed => {
            message.failure_reason.clone_from(&update.detail)
        }
        MessageStatus::Sent => {}
    }
    conn.prepare_cached(
        "UPDATE messages SET status = ?2, delivered_at = ?3, read_at = ?4, failure_reason = ?5 WHERE message_id = ?1",
    )?
    .execute(params![
        message.message_id.as_str(),
        message.status.as_str(),
        message.delivered_at,
        message.read_at,
        message.failure_reason
    ])?;
    conn.prepare_cached("INSERT OR IGNORE INTO status_history (message_id, status, at, detail) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![message.message_id.as_str(), update.status.as_str(), update.at, update.detail])?;
    Ok(Transition::Applied(message))
}

fn idempotent_row(row: &Row<'_>) -> rusqlite::Result<IdempotentRequest> {
    Ok(IdempotentRequest {
        fingerprint: row.get(0)?,
        message_id: parsed(row, 1)?,
        conversation_id: parsed(row, 2)?,
        timestamp: row.get(3)?,
        appended: row.get(4)?,
    })
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
            insert_conversation_rows(&tx, &conversation, 0)?;
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
    ) -> Result<Vec<Message>, StoreError> {
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

    async fn apply_statuses(
        &self,
        updates: &[StatusUpdate],
    ) -> Result<Vec<Transition>, StoreError> {
        let updates = updates.to_vec();
        self.write(move |conn| {
            let tx = conn.transaction()?;
            let transitions = updates
                .iter()
                .map(|u| apply_status(&tx, u))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            tx.commit()?;
            Ok(transitions)
        })
        .await
    }

    async fn message(&self, id: &MessageId) -> Result<Option<Message>, StoreError> {
        let id = id.clone();
        self.read(move |conn| find_message(conn, id.as_str())).await
    }

    async fn status_history(&self, id: &MessageId) -> Result<Vec<StatusChange>, StoreError> {
        let id = id.clone();
        self.read(move |conn| {
            conn.prepare_cached(
                // Statuses only move forward, so their rank orders them even when clocks of two processes differ.
                "SELECT status, at, detail FROM status_history WHERE message_id = ?1 ORDER BY
                 CASE status WHEN 'SENT' THEN 0 WHEN 'PENDING' THEN 1 WHEN 'DELIVERED' THEN 2 WHEN 'READ' THEN 3 ELSE 4 END, at",
            )?
                .query_map([id.as_str()], |row| Ok(StatusChange { status: status_column(row, 0)?, at: row.get(1)?, detail: row.get(2)? }))?
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
            let mut sql =
                format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?");
            let mut args: Vec<Value> = vec![Value::Text(conversation.as_str().to_owned())];
            if let Some(after) = query.after {
                sql.push_str(" AND seq > ?");
                args.push(Value::Integer(after as i64));
            }
            if let Some(before) = query.before {
                sql.push_str(" AND seq < ?");
                args.push(Value::Integer(before as i64));
            }
            sql.push_str(if query.ascending {
                " ORDER BY seq ASC"
            } else {
                " ORDER BY seq DESC"
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
            conn.execute(
                "DELETE FROM idempotency_keys WHERE created_at < ?1",
                [before],
            )
            .map(|n| n as u64)
        })
        .await
    }
}
