//! Rows of the store's tables turned into domain values, and the lookups its queries share.

use super::FILE_COLUMNS;
use chat4all_core::ids::{Email, InvalidValue, UserId};
use chat4all_core::model::{
    Conversation, ConversationKind, FileMeta, Message, UploadSession, User,
};
use chat4all_core::ports::IdempotentRequest;
use chat4all_core::status::MessageStatus;
use rusqlite::{Connection, OptionalExtension, Row, params};

/// Reads a validated id column.
pub(super) fn parsed<T: TryFrom<String, Error = InvalidValue>>(
    row: &Row<'_>,
    index: usize,
) -> rusqlite::Result<T> {
    let raw: String = row.get(index)?;
    T::try_from(raw).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub(super) fn status_column(row: &Row<'_>, index: usize) -> rusqlite::Result<MessageStatus> {
    let raw: String = row.get(index)?;
    raw.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, e.into())
    })
}

/// A message row in `MESSAGE_COLUMNS` order, with its attachment.
pub(super) fn message_row(row: &Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        attachment: match row.get::<_, Option<String>>(11)? {
            Some(_) => Some(file_row(row, 11)?),
            None => None,
        },
        ..message_fields(row)?
    })
}

/// A message's own columns (the first eleven of `MESSAGE_COLUMNS`), without its attachment.
fn message_fields(row: &Row<'_>) -> rusqlite::Result<Message> {
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
        attachment: None,
    })
}

/// A file's columns starting at `at` (in `FILE_COLUMNS` order).
pub(super) fn file_row(row: &Row<'_>, at: usize) -> rusqlite::Result<FileMeta> {
    Ok(FileMeta {
        file_id: parsed(row, at)?,
        conversation_id: parsed(row, at + 1)?,
        uploader_id: parsed(row, at + 2)?,
        filename: row.get(at + 3)?,
        size_bytes: row.get::<_, i64>(at + 4)? as u64,
        mimetype: row.get(at + 5)?,
        checksum: row.get(at + 6)?,
        object_key: row.get(at + 7)?,
        uploaded_at: row.get(at + 8)?,
    })
}

pub(super) fn find_file(conn: &Connection, id: &str) -> rusqlite::Result<Option<FileMeta>> {
    conn.prepare_cached(&format!(
        "SELECT {FILE_COLUMNS} FROM files f WHERE f.file_id = ?1"
    ))?
    .query_row([id], |row| file_row(row, 0))
    .optional()
}

pub(super) fn upload_row(row: &Row<'_>) -> rusqlite::Result<UploadSession> {
    Ok(UploadSession {
        upload_id: parsed(row, 0)?,
        conversation_id: parsed(row, 1)?,
        uploader_id: parsed(row, 2)?,
        filename: row.get(3)?,
        mimetype: row.get(4)?,
        size_bytes: row.get::<_, i64>(5)? as u64,
        checksum: row.get(6)?,
        created_at: row.get(7)?,
        expires_at: row.get(8)?,
    })
}

/// The merged, sorted byte ranges of an upload.
pub(super) fn merged_ranges(conn: &Connection, id: &str) -> rusqlite::Result<Vec<(u64, u64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT start, end FROM upload_ranges WHERE upload_id = ?1 ORDER BY start, end",
    )?;
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for range in stmt.query_map([id], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
    })? {
        let (start, end) = range?;
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    Ok(merged)
}

pub(super) fn user_row(row: &Row<'_>) -> rusqlite::Result<User> {
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

/// One message with its attachment. Two lookups rather than a join: SQLite re-prepares a join (or an ORDER BY)
/// each time its parameters change, and this runs for every message the router stores.
pub(super) fn find_message(conn: &Connection, id: &str) -> rusqlite::Result<Option<Message>> {
    let found = conn
        .prepare_cached(
            "SELECT message_id, conversation_id, seq, sender_id, recipient_id, content, status, timestamp,
                delivered_at, read_at, failure_reason, file_id FROM messages WHERE message_id = ?1",
        )?
        .query_row([id], |row| {
            let file_id: Option<String> = row.get(11)?;
            Ok((message_fields(row)?, file_id))
        })
        .optional()?;
    let Some((mut message, file_id)) = found else {
        return Ok(None);
    };
    if let Some(file_id) = file_id {
        message.attachment = find_file(conn, &file_id)?;
    }
    Ok(Some(message))
}

pub(super) fn load_conversation(
    conn: &Connection,
    id: &str,
) -> rusqlite::Result<Option<Conversation>> {
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
    // Sorted here, not by ORDER BY, which would make SQLite re-prepare the statement on every membership check.
    let mut members: Vec<(i64, UserId)> = conn
        .prepare_cached("SELECT joined_at, user_id FROM members WHERE conversation_id = ?1")?
        .query_map([id], |row| Ok((row.get(0)?, parsed(row, 1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    members.sort_unstable();
    conversation.members = members.into_iter().map(|(_, user)| user).collect();
    Ok(Some(conversation))
}

/// A new conversation (no message yet) and its members.
pub(super) fn insert_conversation_rows(
    conn: &Connection,
    conversation: &Conversation,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO conversations (conversation_id, kind, name, created_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        conversation.conversation_id.as_str(),
        conversation.kind.as_str(),
        conversation.name,
        conversation.created_by.as_str(),
        conversation.created_at
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

pub(super) fn idempotent_row(row: &Row<'_>) -> rusqlite::Result<IdempotentRequest> {
    Ok(IdempotentRequest {
        fingerprint: row.get(0)?,
        message_id: parsed(row, 1)?,
        conversation_id: parsed(row, 2)?,
        timestamp: row.get(3)?,
        appended: row.get(4)?,
    })
}

/// The rows of `query` for every key of `keys`, `query` ending in `IN` before the list. The keys travel as one
/// JSON array, so one cached statement serves lists of every length (an `IN (?, ?, …)` list had to be prepared
/// anew at each call: 2 % of the server's time at 5,000 messages/s, on the router's path).
pub(super) fn rows_in<T>(
    conn: &Connection,
    query: &str,
    keys: &[String],
    row: impl Fn(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let list = serde_json::to_string(keys)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    let mut stmt = conn.prepare_cached(&format!("{query} (SELECT value FROM json_each(?1))"))?;
    stmt.query_map([list], row)?.collect()
}
