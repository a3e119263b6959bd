//! Rows of the store's tables turned into domain values, and the lookups its queries share.

use crate::error::Error;
use chat4all_core::ids::{Email, InvalidValue, UserId};
use chat4all_core::model::{Conversation, ConversationKind, FileMeta, Message, User};
use chat4all_core::status::MessageStatus;
use std::collections::HashMap;
use tokio_postgres::{GenericClient, Row};

/// A message row with its attachment (`f.*` is NULL when there is none).
pub(crate) const MESSAGE_COLUMNS: &str = "m.message_id, m.conversation_id, m.seq, m.sender_id, m.recipient_id, m.content,
     m.status, m.timestamp, m.delivered_at, m.read_at, m.failure_reason, f.file_id, f.conversation_id, f.uploader_id,
     f.filename, f.size_bytes, f.mimetype, f.checksum, f.object_key, f.uploaded_at";
/// Messages joined with their attachment's metadata.
pub(crate) const MESSAGES_WITH_FILES: &str =
    "messages m LEFT JOIN files f ON f.file_id = m.file_id";
/// Messages whose id is in the array `$1`, joined with their attachment's metadata.
pub(crate) const MESSAGES_BY_ID: &str =
    "UNNEST($1::TEXT[]) AS k (id) JOIN messages m ON m.message_id = k.id
     LEFT JOIN files f ON f.file_id = m.file_id";
/// A file's columns in `file_row` order.
pub(crate) const FILE_COLUMNS: &str =
    "f.file_id, f.conversation_id, f.uploader_id, f.filename, f.size_bytes, f.mimetype,
     f.checksum, f.object_key, f.uploaded_at";

/// Reads a validated id column.
pub(crate) fn parsed<T: TryFrom<String, Error = InvalidValue>>(
    row: &Row,
    index: usize,
) -> Result<T, Error> {
    Ok(T::try_from(row.try_get::<_, String>(index)?)?)
}

/// Reads a status column.
pub(crate) fn status_column(row: &Row, index: usize) -> Result<MessageStatus, Error> {
    let raw: String = row.try_get(index)?;
    raw.parse()
        .map_err(|e: String| InvalidValue(format!("status {raw}: {e}")).into())
}

/// A message row in `MESSAGE_COLUMNS` order, with its attachment.
pub(crate) fn message_row(row: &Row) -> Result<Message, Error> {
    Ok(Message {
        message_id: parsed(row, 0)?,
        conversation_id: parsed(row, 1)?,
        seq: row.try_get::<_, i64>(2)? as u64,
        sender_id: parsed(row, 3)?,
        recipient_id: row.try_get(4)?,
        content: row.try_get(5)?,
        status: status_column(row, 6)?,
        timestamp: row.try_get(7)?,
        delivered_at: row.try_get(8)?,
        read_at: row.try_get(9)?,
        failure_reason: row.try_get(10)?,
        attachment: match row.try_get::<_, Option<String>>(11)? {
            Some(_) => Some(file_row(row, 11)?),
            None => None,
        },
    })
}

/// A file's columns starting at `at` (in `FILE_COLUMNS` order).
pub(crate) fn file_row(row: &Row, at: usize) -> Result<FileMeta, Error> {
    Ok(FileMeta {
        file_id: parsed(row, at)?,
        conversation_id: parsed(row, at + 1)?,
        uploader_id: parsed(row, at + 2)?,
        filename: row.try_get(at + 3)?,
        size_bytes: row.try_get::<_, i64>(at + 4)? as u64,
        mimetype: row.try_get(at + 5)?,
        checksum: row.try_get(at + 6)?,
        object_key: row.try_get(at + 7)?,
        uploaded_at: row.try_get(at + 8)?,
    })
}

/// A user row: user_id, username, email, created_at.
pub(crate) fn user_row(row: &Row) -> Result<User, Error> {
    Ok(User {
        user_id: parsed(row, 0)?,
        username: parsed(row, 1)?,
        email: row
            .try_get::<_, Option<String>>(2)?
            .map(Email::try_from)
            .transpose()?,
        created_at: row.try_get(3)?,
    })
}

/// The files among `ids`, by id.
pub(crate) async fn files_by_id(
    client: &impl GenericClient,
    ids: &[String],
) -> Result<HashMap<String, FileMeta>, Error> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = client
        .query(
            &format!(
                "SELECT {FILE_COLUMNS} FROM UNNEST($1::TEXT[]) AS k (id) JOIN files f ON f.file_id = k.id"
            ),
            &[&ids],
        )
        .await?;
    rows.iter()
        .map(|row| file_row(row, 0).map(|f| (f.file_id.as_str().to_owned(), f)))
        .collect()
}

/// The conversations among `ids` with their members (in join order, ties by user id), in the order of `ids`.
pub(crate) async fn load_conversations(
    client: &impl GenericClient,
    ids: &[String],
) -> Result<Vec<Conversation>, Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let heads = client
        .query(
            "SELECT conversation_id, kind, name, created_at, created_by FROM conversations
             WHERE conversation_id = ANY($1)",
            &[&ids],
        )
        .await?;
    let mut found: HashMap<String, Conversation> = HashMap::with_capacity(heads.len());
    for row in &heads {
        let kind: String = row.try_get(1)?;
        let conversation = Conversation {
            conversation_id: parsed(row, 0)?,
            kind: if kind == "group" {
                ConversationKind::Group
            } else {
                ConversationKind::Direct
            },
            name: row.try_get(2)?,
            members: Vec::new(),
            created_at: row.try_get(3)?,
            created_by: parsed(row, 4)?,
        };
        found.insert(
            conversation.conversation_id.as_str().to_owned(),
            conversation,
        );
    }
    let member_rows = client
        .query(
            "SELECT conversation_id, joined_at, user_id FROM members WHERE conversation_id = ANY($1)",
            &[&ids],
        )
        .await?;
    let mut members: HashMap<String, Vec<(i64, UserId)>> = HashMap::new();
    for row in &member_rows {
        members
            .entry(row.try_get(0)?)
            .or_default()
            .push((row.try_get(1)?, parsed(row, 2)?));
    }
    // Sorted here rather than by ORDER BY, so the order does not depend on the database's collation.
    let mut ordered = Vec::with_capacity(found.len());
    for id in ids {
        if let Some(mut conversation) = found.remove(id) {
            let mut of = members.remove(id).unwrap_or_default();
            of.sort_unstable();
            conversation.members = of.into_iter().map(|(_, user)| user).collect();
            ordered.push(conversation);
        }
    }
    Ok(ordered)
}

/// Inserts a new conversation (no message yet) and its members; false when the id is taken.
pub(crate) async fn insert_conversation_rows(
    client: &impl GenericClient,
    conversation: &Conversation,
) -> Result<bool, Error> {
    let id = conversation.conversation_id.as_str();
    let inserted = client
        .execute(
            "INSERT INTO conversations (conversation_id, kind, name, created_by, created_at, last_seq)
             VALUES ($1, $2, $3, $4, $5, 0) ON CONFLICT (conversation_id) DO NOTHING",
            &[
                &id,
                &conversation.kind.as_str(),
                &conversation.name,
                &conversation.created_by.as_str(),
                &conversation.created_at,
            ],
        )
        .await?;
    if inserted == 0 {
        return Ok(false);
    }
    let users: Vec<&str> = conversation.members.iter().map(UserId::as_str).collect();
    client
        .execute(
            "INSERT INTO members (conversation_id, user_id, joined_at)
             SELECT $1, u, $3 FROM UNNEST($2::text[]) AS u ON CONFLICT DO NOTHING",
            &[&id, &users, &conversation.created_at],
        )
        .await?;
    Ok(true)
}

/// Rows of `sql` as domain values.
pub(crate) fn all<T>(
    rows: &[Row],
    each: impl Fn(&Row) -> Result<T, Error>,
) -> Result<Vec<T>, Error> {
    rows.iter().map(each).collect()
}
