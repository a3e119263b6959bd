//! The store's message writes: a message gets the next `seq` of its conversation (idempotent by id), and a
//! status change decided by core is saved if the message is still where core saw it.

use super::rows::{find_file, find_message};
use chat4all_core::events::MessageAccepted;
use chat4all_core::model::Message;
use chat4all_core::ports::{Recorded, StatusWrite};
use chat4all_core::status::MessageStatus;
use rusqlite::{Connection, OptionalExtension, params};

/// Stores one accepted message in the open transaction, or returns the copy already stored.
pub(super) fn record_message(
    conn: &Connection,
    accepted: &MessageAccepted,
) -> rusqlite::Result<Recorded> {
    if let Some(existing) = find_message(conn, accepted.message_id.as_str())? {
        return Ok(Recorded::Stored(existing));
    }
    let next_seq: Option<i64> = conn
        .prepare_cached("UPDATE conversations SET last_seq = last_seq + 1 WHERE conversation_id = ?1 RETURNING last_seq")?
        .query_row([accepted.conversation_id.as_str()], |r| r.get(0))
        .optional()?;
    let Some(seq) = next_seq else {
        return Ok(Recorded::NoConversation);
    };
    let seq = seq as u64;
    conn.prepare_cached(
        "INSERT INTO messages (message_id, conversation_id, seq, sender_id, recipient_id, content, status, timestamp, file_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'SENT', ?7, ?8)",
    )?
    .execute(params![
        accepted.message_id.as_str(),
        accepted.conversation_id.as_str(),
        seq as i64,
        accepted.sender_id.as_str(),
        accepted.recipient_id,
        accepted.content,
        accepted.timestamp,
        accepted.file_id.as_ref().map(|f| f.as_str())
    ])?;
    let attachment = match &accepted.file_id {
        Some(file) => find_file(conn, file.as_str())?,
        None => None,
    };
    conn.prepare_cached(
        "INSERT INTO status_history (message_id, status, at) VALUES (?1, 'SENT', ?2)",
    )?
    .execute(params![accepted.message_id.as_str(), accepted.timestamp])?;
    Ok(Recorded::Stored(Message {
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
        attachment,
    }))
}

/// Saves one status change in the open transaction if the message is still in `write.from`.
pub(super) fn save_status(conn: &Connection, write: &StatusWrite) -> rusqlite::Result<bool> {
    let message = &write.message;
    let changed = conn
        .prepare_cached(
            "UPDATE messages SET status = ?2, delivered_at = ?3, read_at = ?4, failure_reason = ?5
             WHERE message_id = ?1 AND status = ?6",
        )?
        .execute(params![
            message.message_id.as_str(),
            message.status.as_str(),
            message.delivered_at,
            message.read_at,
            message.failure_reason,
            write.from.as_str()
        ])?;
    if changed == 0 {
        return Ok(false);
    }
    let change = &write.change;
    conn.prepare_cached(
        "INSERT OR IGNORE INTO status_history (message_id, status, at, detail, correlation_id) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        message.message_id.as_str(),
        change.status.as_str(),
        change.at,
        change.detail,
        change.correlation_id
    ])?;
    Ok(true)
}
