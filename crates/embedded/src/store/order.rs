//! Each conversation's order of messages, kept in two parts: `recent_messages`, appended in arrival order and
//! unindexed, and `message_order`, sorted by `(conversation_id, seq)`, into which the recent entries are moved in
//! one sorted run every [`MERGE_AFTER`] messages. An index kept for every message would write each message's
//! conversation end, a leaf of its own once the store has grown; a run writes that leaf once for all the
//! conversation's messages since the last run. Readers scan the recent part (a few thousand narrow rows) beside
//! the sorted one, in one statement, so a run committed meanwhile can neither hide nor repeat an entry.

use rusqlite::{Connection, OptionalExtension, params};

/// Recent entries that make a run: at 1,000 busy conversations, about 8 entries a conversation's leaf each time.
/// Readers scan at most this many narrow rows besides the sorted part.
pub(crate) const MERGE_AFTER: u64 = 8_192;

/// The next `seq` of `conversation`, or `None` if there is no such conversation.
pub(super) fn next_seq(conn: &Connection, conversation: &str) -> rusqlite::Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT last_seq FROM conversations WHERE conversation_id = ?1")?
        .query_row([conversation], |r| r.get::<_, i64>(0))
        .optional()?
        .map(|last| last + 1))
}

/// Places the message numbered `message_no` at `seq` in its conversation's order.
pub(super) fn place(
    conn: &Connection,
    message_no: i64,
    conversation: &str,
    seq: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE OR FAIL conversations SET last_seq = ?2 WHERE conversation_id = ?1",
    )?
    .execute(params![conversation, seq])?;
    conn.prepare_cached(
        "INSERT OR FAIL INTO recent_messages (message_no, conversation_id, seq) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![message_no, conversation, seq])?;
    Ok(())
}

/// Moves the recent entries into the sorted part once there are at least `merge_after` of them.
pub(super) fn merge_when_due(conn: &Connection, merge_after: u64) -> rusqlite::Result<()> {
    // Messages are only ever appended, so the recent numbers are consecutive: their span counts them without a scan.
    let recent: i64 = conn
        .prepare_cached(
            "SELECT COALESCE(MAX(message_no) - MIN(message_no) + 1, 0) FROM recent_messages",
        )?
        .query_row([], |r| r.get(0))?;
    if recent as u64 >= merge_after {
        merge(conn)?;
    }
    Ok(())
}

/// Moves every recent entry into the sorted part, in the caller's transaction.
pub(super) fn merge(conn: &Connection) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO message_order (conversation_id, seq, message_no)
         SELECT conversation_id, seq, message_no FROM recent_messages ORDER BY conversation_id, seq",
    )?
    .execute([])?;
    conn.prepare_cached("DELETE FROM recent_messages")?
        .execute([])?;
    Ok(())
}
