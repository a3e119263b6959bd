//! Each conversation's order of messages, kept in two parts: `recent_messages`, where a message's entry is
//! appended in arrival order, marked with one of [`SLICES`] slices chosen by its conversation, and
//! `message_order`, sorted by `(conversation_id, seq)`, into which a slice's recent entries are moved in one
//! sorted run.
//!
//! An index kept for every message would write each message's conversation end, a leaf of its own once the store
//! has grown. A run writes that leaf once for all the conversation's messages since its slice's last run. Every
//! `merge_every`-th message moves the next slice in turn, so a slice is moved every `SLICES × merge_every`
//! messages and a run writes the leaves of an eighth of the conversations: no commit carries the leaves of all of
//! them at once, however many conversations are busy. `order_runs` keeps how far each slice was moved; entries
//! older than every slice's mark are deleted from the front of the recent part.
//!
//! Readers scan the recent part (the last `SLICES × merge_every` entries or so, narrow rows) beside the sorted one,
//! in one statement, and take a recent entry only past its slice's mark: a run committed meanwhile can neither hide
//! nor repeat an entry.

use rusqlite::{Connection, OptionalExtension, params};

/// Slices of the recent part.
const SLICES: u64 = 8;

/// Messages between two runs by default: each slice is moved every 8,192 messages, with about 1,024 entries (at
/// 1,000 busy conversations, about 8 a conversation's leaf).
pub(crate) const MERGE_EVERY: u64 = 1_024;

/// The recent entries not moved yet: those past their slice's mark (`n` names `recent_messages`). SQLite tests a
/// term holding a correlated subquery after the others, so a reader's other filters go first.
pub(super) const UNMERGED: &str =
    "n.message_no > COALESCE((SELECT merged_through FROM order_runs WHERE slice = n.slice), 0)";

/// The slice of `conversation`'s recent entries. It is stored, so it must never change: FNV-1a, a fixed function.
pub(super) fn slice_of(conversation: &str) -> i64 {
    let hash = conversation
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    (hash % SLICES) as i64
}

/// The next `seq` of `conversation`, or `None` if there is no such conversation.
pub(super) fn next_seq(conn: &Connection, conversation: &str) -> rusqlite::Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT last_seq FROM conversations WHERE conversation_id = ?1")?
        .query_row([conversation], |r| r.get::<_, i64>(0))
        .optional()?
        .map(|last| last + 1))
}

/// Places the message numbered `message_no` at `seq` in its conversation's order, and moves the slice whose turn
/// it is when `message_no` is a multiple of `merge_every`.
pub(super) fn place(
    conn: &Connection,
    message_no: i64,
    conversation: &str,
    seq: i64,
    merge_every: u64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE OR FAIL conversations SET last_seq = ?2 WHERE conversation_id = ?1",
    )?
    .execute(params![conversation, seq])?;
    conn.prepare_cached(
        "INSERT OR FAIL INTO recent_messages (message_no, slice, conversation_id, seq) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![message_no, slice_of(conversation), conversation, seq])?;
    let number = message_no as u64;
    if number.is_multiple_of(merge_every) {
        merge_slice(conn, (number / merge_every % SLICES) as i64, message_no)?;
    }
    Ok(())
}

/// Moves `slice`'s recent entries, up to `through`, into the sorted part, in the caller's transaction.
fn merge_slice(conn: &Connection, slice: i64, through: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO message_order (conversation_id, seq, message_no)
         SELECT conversation_id, seq, message_no FROM recent_messages n
         WHERE n.slice = ?1 AND n.message_no <= ?2 AND {UNMERGED} ORDER BY conversation_id, seq"
    ))?
    .execute(params![slice, through])?;
    conn.prepare_cached(
        "INSERT INTO order_runs (slice, merged_through) VALUES (?1, ?2)
         ON CONFLICT (slice) DO UPDATE SET merged_through = excluded.merged_through",
    )?
    .execute(params![slice, through])?;
    // What every slice has moved is the front of the recent part.
    conn.prepare_cached(
        "DELETE FROM recent_messages WHERE message_no <=
             (SELECT CASE WHEN COUNT(*) = ?1 THEN MIN(merged_through) ELSE 0 END FROM order_runs)",
    )?
    .execute([SLICES as i64])?;
    Ok(())
}

/// Moves every recent entry into the sorted part, in the caller's transaction: each slice through its end, then
/// the marks go, so that the next messages start the runs afresh.
pub(super) fn merge_all(conn: &Connection) -> rusqlite::Result<()> {
    for slice in 0..SLICES {
        merge_slice(conn, slice as i64, i64::MAX)?;
    }
    conn.execute("DELETE FROM order_runs", []).map(drop)
}
