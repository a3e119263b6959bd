//! A conversation's order in the SQLite store lives in two parts, the recent messages and the sorted runs they are
//! moved into: every read must see one order whichever part holds each message, across runs and restarts, and a
//! store of the earlier layout (one index entry a message) must open with its order intact.

use chat4all_core::contract;
use chat4all_core::events::MessageAccepted;
use chat4all_core::ids::{ConversationId, MessageId, UserId};
use chat4all_core::model::{Conversation, ConversationKind, HistoryQuery, ReadReceipt};
use chat4all_core::ports::{Recorded, Stores};
use chat4all_embedded::SqliteStore;
use std::path::Path;
use std::sync::Arc;

#[tokio::test]
async fn the_store_contract_holds_when_runs_are_merged_every_few_messages() {
    for merge_after in [1, 3] {
        let dir = tempfile::tempdir().unwrap();
        let store =
            SqliteStore::open_merging_after(&dir.path().join("store.db"), merge_after).unwrap();
        contract::store::run_all(Stores::all_in(Arc::new(store))).await;
    }
}

fn conversation(id: &str, members: &[&UserId]) -> Conversation {
    Conversation {
        conversation_id: ConversationId::parse(id).unwrap(),
        kind: ConversationKind::Group,
        name: None,
        members: members.iter().map(|m| (*m).clone()).collect(),
        created_at: 1,
        created_by: members[0].clone(),
    }
}

fn accepted(conversation: &str, sender: &UserId) -> MessageAccepted {
    MessageAccepted {
        message_id: MessageId::generate(),
        conversation_id: ConversationId::parse(conversation).unwrap(),
        sender_id: sender.clone(),
        recipient_id: None,
        content: "hi".into(),
        file_id: None,
        expires_at: None,
        via: None,
        timestamp: 1000,
    }
}

/// Records messages one call each, as the router's batches arrive; returns their seqs.
async fn send(stores: &Stores, conversation: &str, senders: &[&UserId]) -> Vec<u64> {
    let mut seqs = Vec::new();
    for sender in senders {
        let recorded = stores
            .messages
            .record_messages(&[accepted(conversation, sender)])
            .await
            .unwrap();
        match &recorded[..] {
            [Recorded::Stored(m)] => seqs.push(m.seq),
            other => panic!("not stored: {other:?}"),
        }
    }
    seqs
}

fn page(after: Option<u64>, before: Option<u64>, ascending: bool, offset: u64) -> HistoryQuery {
    HistoryQuery {
        limit: 3,
        offset,
        after,
        before,
        ascending,
    }
}

/// Every page shape the API asks for, as (seqs, has_more), over a conversation of seqs 1 to 7.
async fn pages(stores: &Stores, id: &ConversationId) -> Vec<(Vec<u64>, bool)> {
    let mut out = Vec::new();
    for query in [
        page(None, None, true, 0),
        page(None, None, false, 0),
        page(Some(2), None, true, 0),
        page(None, Some(6), false, 0),
        page(Some(1), Some(7), true, 2),
        page(None, None, false, 5),
    ] {
        let got = stores.messages.history(id, &query).await.unwrap();
        out.push((got.messages.iter().map(|m| m.seq).collect(), got.has_more));
    }
    out
}

/// `reader`'s (last seq, read up to, unread) in `id`.
async fn reading(stores: &Stores, reader: &UserId, id: &ConversationId) -> (u64, u64, u64) {
    let all = stores
        .messages
        .readings(reader, std::slice::from_ref(id))
        .await
        .unwrap();
    (all[0].last_seq, all[0].read_up_to, all[0].unread)
}

const EXPECTED_PAGES: [(&[u64], bool); 6] = [
    (&[1, 2, 3], true),
    (&[7, 6, 5], true),
    (&[3, 4, 5], true),
    (&[5, 4, 3], true),
    (&[4, 5, 6], false),
    (&[2, 1], false),
];

fn expected_pages() -> Vec<(Vec<u64>, bool)> {
    EXPECTED_PAGES
        .iter()
        .map(|(seqs, more)| (seqs.to_vec(), *more))
        .collect()
}

#[tokio::test]
async fn pages_and_unread_counts_span_the_sorted_runs_and_the_recent_messages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (ann, bob) = (UserId::generate(), UserId::generate());
    let id = ConversationId::parse("order").unwrap();
    {
        // A run every 4 messages: seqs 1-4 sorted, 5-7 recent.
        let stores = Stores::all_in(Arc::new(SqliteStore::open_merging_after(&path, 4).unwrap()));
        stores
            .conversations
            .insert_conversation(&conversation("order", &[&ann, &bob]))
            .await
            .unwrap();
        let seqs = send(
            &stores,
            "order",
            &[&ann, &bob, &bob, &ann, &bob, &ann, &bob],
        )
        .await;
        assert_eq!(seqs, [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(parts(&path), (4, 3), "one run of 4, then 3 recent");
        assert_eq!(pages(&stores, &id).await, expected_pages());
        stores
            .receipts
            .advance_receipt(&ReadReceipt {
                conversation_id: id.clone(),
                user_id: ann.clone(),
                up_to_seq: 1,
                read_at: 5,
            })
            .await
            .unwrap();
        assert_eq!(
            reading(&stores, &ann, &id).await,
            (7, 1, 4),
            "bob's 2 and 3 (sorted) and 5 and 7 (recent); ann's own never count"
        );
    }
    // Reopened: everything recent has become a run, and the order goes on where it was.
    let stores = Stores::all_in(Arc::new(SqliteStore::open(&path).unwrap()));
    assert_eq!(parts(&path), (7, 0));
    assert_eq!(pages(&stores, &id).await, expected_pages());
    assert_eq!(reading(&stores, &ann, &id).await, (7, 1, 4));
    assert_eq!(send(&stores, "order", &[&bob]).await, [8]);
}

/// How many entries the sorted runs and the recent part hold.
fn parts(path: &Path) -> (i64, i64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let count = |table: &str| {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    (count("message_order"), count("recent_messages"))
}

/// The schema as migrations 1 to 7 left it.
fn store_of_the_earlier_layout(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    for sql in [
        include_str!("../migrations/0001_initial.sql"),
        include_str!("../migrations/0002_files.sql"),
        include_str!("../migrations/0003_status_correlation.sql"),
        include_str!("../migrations/0004_controls.sql"),
        include_str!("../migrations/0005_groups.sql"),
        include_str!("../migrations/0006_identities.sql"),
        include_str!("../migrations/0007_seq_from_index.sql"),
    ] {
        conn.execute_batch(sql).unwrap();
    }
    conn.pragma_update(None, "user_version", 7).unwrap();
    conn
}

#[tokio::test]
async fn a_store_of_one_index_entry_a_message_keeps_its_order_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (ann, bob) = (UserId::generate(), UserId::generate());
    {
        let conn = store_of_the_earlier_layout(&path);
        conn.execute(
            "INSERT INTO conversations (conversation_id, kind, name, created_by, created_at) VALUES ('order', 'group', NULL, ?1, 1)",
            [ann.as_str()],
        )
        .unwrap();
        for user in [&ann, &bob] {
            conn.execute(
                "INSERT INTO members (conversation_id, user_id, joined_at) VALUES ('order', ?1, 1)",
                [user.as_str()],
            )
            .unwrap();
        }
        // Inserted out of seq order, as rows of several conversations interleave.
        for seq in [3, 1, 2, 7, 5, 4, 6] {
            let sender = if seq % 2 == 0 { &ann } else { &bob };
            conn.execute(
                "INSERT INTO messages (message_id, conversation_id, seq, sender_id, content, status, timestamp)
                 VALUES (?1, 'order', ?2, ?3, 'hi', 'SENT', 1000)",
                rusqlite::params![MessageId::generate().as_str(), seq, sender.as_str()],
            )
            .unwrap();
        }
    }
    let stores = Stores::all_in(Arc::new(SqliteStore::open(&path).unwrap()));
    let id = ConversationId::parse("order").unwrap();
    assert_eq!(pages(&stores, &id).await, expected_pages());
    assert_eq!(
        reading(&stores, &ann, &id).await,
        (7, 0, 4),
        "bob sent 1, 3, 5, 7"
    );
    assert_eq!(send(&stores, "order", &[&bob]).await, [8], "seq goes on");
}
