//! The SQLite store's messages: a message gets the next `seq` of its conversation (idempotent by id), and a status
//! change decided by core is saved only if the message is still where core saw it; history pages by `seq`.

use super::rows::{find_file, find_message, message_row, rows_in, status_column};
use super::{MESSAGE_COLUMNS, MESSAGES_WITH_FILES, SqliteStore};
use async_trait::async_trait;
use chat4all_core::events::MessageAccepted;
use chat4all_core::ids::{ConversationId, MessageId, UserId};
use chat4all_core::model::{HistoryPage, HistoryQuery, Message, Reading, StatusChange};
use chat4all_core::ports::{MessageStore, Recorded, Settle, StatusWrite, StoreError};
use chat4all_core::status::MessageStatus;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, ToSql, params, params_from_iter};

#[async_trait]
impl MessageStore for SqliteStore {
    async fn record_and_settle(
        &self,
        accepted: &[MessageAccepted],
        settle: Settle,
    ) -> Result<Vec<(Recorded, Option<StatusWrite>)>, StoreError> {
        let accepted = accepted.to_vec();
        self.write(move |conn| {
            accepted
                .iter()
                .map(|a| record_and_settle(conn, a, &settle))
                .collect()
        })
        .await
    }

    async fn save_statuses(&self, writes: &[StatusWrite]) -> Result<Vec<bool>, StoreError> {
        let writes = writes.to_vec();
        self.write(move |conn| {
            let saved = writes
                .iter()
                .map(|w| save_status(conn, w))
                .collect::<rusqlite::Result<Vec<_>>>()?;
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
            rows_in(
                conn,
                &format!(
                    "SELECT {MESSAGE_COLUMNS} FROM {MESSAGES_WITH_FILES} WHERE m.message_id IN"
                ),
                &ids,
                message_row,
            )
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

    async fn readings(
        &self,
        reader: &UserId,
        conversations: &[ConversationId],
    ) -> Result<Vec<Reading>, StoreError> {
        if conversations.is_empty() {
            return Ok(Vec::new());
        }
        let reader = reader.clone();
        let ids =
            serde_json::to_string(conversations).map_err(|e| StoreError::Backend(e.to_string()))?;
        self.read(move |conn| {
            // Per conversation: the last `seq` from the (conversation_id, seq) index's end, the receipt by its key,
            // and a range scan of that index past the receipt.
            conn.prepare_cached(
                "SELECT COALESCE((SELECT MAX(m.seq) FROM messages m WHERE m.conversation_id = c.value), 0),
                     COALESCE(r.up_to_seq, 0),
                     (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.value
                        AND m.seq > COALESCE(r.up_to_seq, 0) AND m.sender_id <> ?1)
                 FROM json_each(?2) AS c
                 LEFT JOIN read_receipts r ON r.conversation_id = c.value AND r.user_id = ?1
                 ORDER BY c.key",
            )?
            .query_map(params![reader.as_str(), ids], |row| {
                Ok(Reading {
                    last_seq: row.get::<_, i64>(0)? as u64,
                    read_up_to: row.get::<_, i64>(1)? as u64,
                    unread: row.get::<_, i64>(2)? as u64,
                })
            })?
            .collect()
        })
        .await
    }
}

/// Stores one accepted message in the open transaction with the change `settle` decides for it, or returns the
/// copy already stored (with that change saved as [`save_status`] saves it).
fn record_and_settle(
    conn: &Connection,
    accepted: &MessageAccepted,
    settle: &Settle,
) -> rusqlite::Result<(Recorded, Option<StatusWrite>)> {
    // The next seq follows the conversation's last in the (conversation_id, seq) index: a read of the leaf the
    // insert below writes anyway. The store has one writer, so no other transaction can take the same seq. The
    // subquery names the conversation through the outer row, not the parameter: SQLite re-prepares a statement
    // whose parameter bounds a MAX over that index each time the value changes (9 % of the server's samples).
    let Some(last) = conn
        .prepare_cached(
            "SELECT (SELECT MAX(seq) FROM messages WHERE conversation_id = c.conversation_id)
             FROM conversations c WHERE c.conversation_id = ?1",
        )?
        .query_row([accepted.conversation_id.as_str()], |r| {
            r.get::<_, Option<i64>>(0)
        })
        .optional()?
    else {
        return Ok((Recorded::NoConversation, None));
    };
    let seq = last.unwrap_or(0) + 1;
    let attachment = match &accepted.file_id {
        Some(file) => find_file(conn, file.as_str())?,
        None => None,
    };
    let message = Message {
        message_id: accepted.message_id.clone(),
        conversation_id: accepted.conversation_id.clone(),
        seq: seq as u64,
        sender_id: accepted.sender_id.clone(),
        recipient_id: accepted.recipient_id.clone(),
        content: accepted.content.clone(),
        status: MessageStatus::Sent,
        timestamp: accepted.timestamp,
        delivered_at: None,
        read_at: None,
        failure_reason: None,
        attachment,
    };
    // A change decided for a message this transaction creates cannot lose a race: the row is written once, as
    // the change leaves it, instead of written SENT and then updated.
    let write = settle(&message).filter(|w| w.from == MessageStatus::Sent);
    let row = write.as_ref().map_or(&message, |w| &w.message);
    // A message seen before (a record replayed after a crash) is the rare case: its id makes the insert fail,
    // which costs less than looking every new message up first.
    let inserted = conn
        .prepare_cached(
            "INSERT OR FAIL INTO messages (message_id, conversation_id, seq, sender_id, recipient_id, content, status,
                 timestamp, delivered_at, read_at, failure_reason, file_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?
        .execute(params![
            row.message_id.as_str(),
            row.conversation_id.as_str(),
            seq,
            row.sender_id.as_str(),
            row.recipient_id,
            row.content,
            row.status.as_str(),
            row.timestamp,
            row.delivered_at,
            row.read_at,
            row.failure_reason,
            accepted.file_id.as_ref().map(|f| f.as_str())
        ]);
    if let Err(e) = inserted {
        let existing = match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::ConstraintViolation) => {
                find_message(conn, accepted.message_id.as_str())?
            }
            _ => None,
        };
        let Some(existing) = existing else {
            return Err(e);
        };
        let saved = match settle(&existing) {
            Some(write) => save_status(conn, &write)?.then_some(write),
            None => None,
        };
        return Ok((Recorded::Stored(existing), saved));
    }
    // Its history starts SENT, with the change's step beside it when there is one.
    match &write {
        Some(write) => {
            let change = &write.change;
            conn.prepare_cached(
                "INSERT OR IGNORE INTO status_history (message_id, status, at, detail, correlation_id)
                 VALUES (?1, 'SENT', ?2, NULL, NULL), (?1, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                accepted.message_id.as_str(),
                accepted.timestamp,
                change.status.as_str(),
                change.at,
                change.detail,
                change.correlation_id
            ])?
        }
        None => conn
            .prepare_cached(
                "INSERT INTO status_history (message_id, status, at) VALUES (?1, 'SENT', ?2)",
            )?
            .execute(params![accepted.message_id.as_str(), accepted.timestamp])?,
    };
    Ok((Recorded::Stored(message), write))
}

/// Saves one status change in the open transaction if the message is still in `write.from`.
fn save_status(conn: &Connection, write: &StatusWrite) -> rusqlite::Result<bool> {
    let message = &write.message;
    let changed = conn
        .prepare_cached(
            "UPDATE OR FAIL messages SET status = ?2, delivered_at = ?3, read_at = ?4, failure_reason = ?5
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
    add_history(conn, write)?;
    Ok(true)
}

/// Adds a saved change's step to its message's status history.
fn add_history(conn: &Connection, write: &StatusWrite) -> rusqlite::Result<()> {
    let change = &write.change;
    conn.prepare_cached(
        "INSERT OR IGNORE INTO status_history (message_id, status, at, detail, correlation_id) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        write.message.message_id.as_str(),
        change.status.as_str(),
        change.at,
        change.detail,
        change.correlation_id
    ])?;
    Ok(())
}
