//! The store's message writes: a message gets the next `seq` of its conversation (idempotent by id), and a
//! status update moves it forward through the state machine or is refused.

use super::rows::*;
use chat4all_core::events::{MessageAccepted, StatusUpdate};
use chat4all_core::model::{Conversation, ConversationKind, Message, Transition};
use chat4all_core::status::MessageStatus;
use rusqlite::{Connection, OptionalExtension, params};

/// Stores one accepted message in the open transaction, or returns the copy already stored.
pub(super) fn record_message(
    conn: &Connection,
    accepted: &MessageAccepted,
) -> rusqlite::Result<Message> {
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
        attachment,
    })
}

/// Applies one status change in the open transaction, if the forward-only rule allows it.
pub(super) fn apply_status(
    conn: &Connection,
    update: &StatusUpdate,
) -> rusqlite::Result<Transition> {
    let Some(mut message) = find_message(conn, update.message_id.as_str())? else {
        return Ok(Transition::UnknownMessage);
    };
    if !update.applies_to(message.status) {
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
    conn.prepare_cached(
        "INSERT OR IGNORE INTO status_history (message_id, status, at, detail, correlation_id) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        message.message_id.as_str(),
        update.status.as_str(),
        update.at,
        update.detail,
        update.correlation_id.as_ref().map(|c| c.as_str())
    ])?;
    Ok(Transition::Applied(message))
}
