//! The store contract against a real PostgreSQL, and what only this adapter promises: gap-free `seq` when two
//! routers record the same messages at once, migrations safe to run from many starters, a batch stored whole or
//! not at all. Each test gets its own database, so they run in parallel. Without `CHAT4ALL_TEST_POSTGRES_URL`
//! (set by `scripts/servers/postgres.sh start`) they are skipped with a notice, or fail under
//! `CHAT4ALL_REQUIRE_SERVERS=1`.

use chat4all_core::contract;
use chat4all_core::events::MessageAccepted;
use chat4all_core::ids::{ConversationId, MessageId, UserId};
use chat4all_core::model::{Conversation, ConversationKind, HistoryQuery, StatusChange};
use chat4all_core::ports::{
    ConversationStore, MessageStore, Recorded, StatusWrite, StoreError, Stores,
};
use chat4all_core::status::MessageStatus;
use chat4all_postgres::{MIGRATIONS, PostgresStore};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

/// A URL of a new, empty database on the test server (`None`: skipped).
async fn fresh_database(pool_size: usize) -> Option<String> {
    let url = contract::servers::url("CHAT4ALL_TEST_POSTGRES_URL")?;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test server");
    let driver = tokio::spawn(connection);
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create a test database");
    drop(client);
    let _ = driver.await;
    let base = url.split_once('?').map_or(url.as_str(), |(base, _)| base);
    let (server, _) = base.rsplit_once('/').expect("a database in the URL");
    Some(format!("{server}/{name}?pool_size={pool_size}"))
}

async fn connect(url: &str) -> PostgresStore {
    PostgresStore::connect(url).await.expect("connect")
}

fn conversation(id: &str, member: &UserId) -> Conversation {
    Conversation {
        conversation_id: ConversationId::parse(id).unwrap(),
        kind: ConversationKind::Group,
        name: None,
        members: vec![member.clone()],
        created_at: 1,
        created_by: member.clone(),
    }
}

fn accepted(conversation: &str, sender: &UserId, content: String) -> MessageAccepted {
    MessageAccepted {
        message_id: MessageId::generate(),
        conversation_id: ConversationId::parse(conversation).unwrap(),
        sender_id: sender.clone(),
        recipient_id: None,
        content,
        file_id: None,
        expires_at: None,
        via: None,
        timestamp: 1000,
    }
}

fn all_of(conversation: &str) -> (ConversationId, HistoryQuery) {
    (
        ConversationId::parse(conversation).unwrap(),
        HistoryQuery {
            limit: 100_000,
            offset: 0,
            after: None,
            before: None,
            ascending: true,
        },
    )
}

#[tokio::test]
async fn postgres_store_meets_the_store_contract() {
    let Some(url) = fresh_database(4).await else {
        return;
    };
    contract::store::run_all(Stores::all_in(Arc::new(connect(&url).await))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_routers_recording_the_same_messages_at_once_get_gap_free_duplicate_free_seq() {
    let Some(url) = fresh_database(4).await else {
        return;
    };
    // Two handles with their own pools: two router processes owning the same partition during a rebalance.
    let (a, b) = (Arc::new(connect(&url).await), Arc::new(connect(&url).await));
    let sender = UserId::generate();
    let conversations: Vec<String> = (0..10).map(|i| format!("race-{i}")).collect();
    for id in &conversations {
        assert!(
            a.insert_conversation(&conversation(id, &sender))
                .await
                .unwrap()
        );
    }
    let (rounds, batch) = (50, 100);
    let mut sent = Vec::new();
    for round in 0..rounds {
        let messages: Vec<MessageAccepted> = (0..batch)
            .map(|i| {
                accepted(
                    &conversations[(i * 7 + round) % 10],
                    &sender,
                    format!("r{round} m{i}"),
                )
            })
            .collect();
        // Router A records the batch as it came, in two halves at once (two consumers' batches in flight); router
        // B, which took the partition over mid-batch, records the second half and then the first, concurrently
        // with A. Four transactions overlap on the same conversations and messages.
        let half = batch / 2;
        let mut rotated = messages[half..].to_vec();
        rotated.extend_from_slice(&messages[..half]);
        let record = |store: &Arc<PostgresStore>, part: Vec<MessageAccepted>| {
            let store = store.clone();
            tokio::spawn(async move { store.record_messages(&part).await })
        };
        let (a1, a2, b1) = (
            record(&a, messages[..half].to_vec()),
            record(&a, messages[half..].to_vec()),
            record(&b, rotated),
        );
        let seq_of = |answers: Vec<Recorded>| -> HashMap<MessageId, (ConversationId, u64)> {
            answers
                .into_iter()
                .map(|r| match r {
                    Recorded::Stored(m) => (m.message_id, (m.conversation_id, m.seq)),
                    Recorded::NoConversation => panic!("the conversation exists"),
                })
                .collect()
        };
        let mut x = seq_of(a1.await.unwrap().unwrap());
        x.extend(seq_of(a2.await.unwrap().unwrap()));
        let y = seq_of(b1.await.unwrap().unwrap());
        assert_eq!(
            x, y,
            "round {round}: both routers are answered the same seq for each message"
        );
        sent.extend(messages.into_iter().map(|m| m.message_id));
    }

    let mut seen = HashSet::new();
    for id in &conversations {
        let (id, query) = all_of(id);
        let page = a.history(&id, &query).await.unwrap();
        let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq).collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "{id}: seq is exactly 1..=n"
        );
        for m in page.messages {
            assert!(seen.insert(m.message_id), "a message is stored once");
        }
    }
    assert_eq!(seen.len(), rounds * batch, "every message is stored");
    assert_eq!(seen, sent.into_iter().collect::<HashSet<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrations_are_idempotent_across_reconnect_and_concurrent_connect() {
    let Some(url) = fresh_database(2).await else {
        return;
    };
    let starters: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PostgresStore::connect(&url).await.map(drop) })
        })
        .collect();
    for starter in starters {
        starter
            .await
            .unwrap()
            .expect("every concurrent starter connects");
    }
    let store = connect(&url).await;
    drop(store);
    let again = connect(&url).await;
    let (client, connection) =
        tokio_postgres::connect(url.split_once('?').unwrap().0, tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    let versions: Vec<i64> = client
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        versions,
        MIGRATIONS.iter().map(|m| m.0).collect::<Vec<_>>(),
        "each migration recorded once"
    );
    // The schema works after all that.
    let user = UserId::generate();
    assert!(
        again
            .insert_conversation(&conversation("after", &user))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_batch_of_500_is_stored_whole_or_not_at_all() {
    let Some(url) = fresh_database(2).await else {
        return;
    };
    let store = connect(&url).await;
    let sender = UserId::generate();
    for id in ["tx-a", "tx-b"] {
        store
            .insert_conversation(&conversation(id, &sender))
            .await
            .unwrap();
    }
    let mut batch: Vec<MessageAccepted> = (0..500)
        .map(|i| {
            accepted(
                if i % 2 == 0 { "tx-a" } else { "tx-b" },
                &sender,
                format!("m{i}"),
            )
        })
        .collect();
    // PostgreSQL refuses a NUL byte in text: the 251st message fails the insert after the locks were taken and
    // the first 250 were counted.
    batch[250].content = "bad\0content".into();
    let failed = store.record_messages(&batch).await;
    assert!(
        matches!(failed, Err(StoreError::Backend(_))),
        "the batch fails: {failed:?}"
    );
    let ids: Vec<MessageId> = batch.iter().map(|m| m.message_id.clone()).collect();
    assert!(
        store.messages(&ids).await.unwrap().is_empty(),
        "no message of the failed batch is stored"
    );
    batch[250].content = "fixed".into();
    let stored = store.record_messages(&batch).await.unwrap();
    let seqs: Vec<u64> = stored
        .iter()
        .map(|r| match r {
            Recorded::Stored(m) => m.seq,
            Recorded::NoConversation => panic!("exists"),
        })
        .collect();
    assert_eq!(
        seqs,
        (0..500).map(|i| i / 2 + 1).collect::<Vec<u64>>(),
        "the counters did not move for the failed batch: seqs start at 1"
    );
}

#[tokio::test]
async fn a_message_repeated_within_a_batch_is_stored_once() {
    let Some(url) = fresh_database(2).await else {
        return;
    };
    let store = connect(&url).await;
    let sender = UserId::generate();
    store
        .insert_conversation(&conversation("twice", &sender))
        .await
        .unwrap();
    let (one, two) = (
        accepted("twice", &sender, "one".into()),
        accepted("twice", &sender, "two".into()),
    );
    let answers = store
        .record_messages(&[one.clone(), one.clone(), two, one])
        .await
        .unwrap();
    let seqs: Vec<u64> = answers
        .iter()
        .map(|r| match r {
            Recorded::Stored(m) => m.seq,
            Recorded::NoConversation => panic!("exists"),
        })
        .collect();
    assert_eq!(seqs, [1, 1, 2, 1]);
    let (id, query) = all_of("twice");
    assert_eq!(store.history(&id, &query).await.unwrap().messages.len(), 2);
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    // Port 1 on loopback: nothing listens there.
    let refused = PostgresStore::connect("postgres://u:p@127.0.0.1:1/db?connect_timeout=2").await;
    assert!(
        matches!(refused, Err(StoreError::Unavailable(_))),
        "{refused:?}"
    );
}

/// The router's ceiling on this server: records/s for batches of 1, 64 and 512 (printed, not asserted; run with
/// `--nocapture`).
#[tokio::test]
async fn record_throughput_by_batch_size() {
    let Some(url) = fresh_database(2).await else {
        return;
    };
    let store = connect(&url).await;
    let sender = UserId::generate();
    let conversations: Vec<String> = (0..100).map(|i| format!("tp-{i}")).collect();
    for id in &conversations {
        store
            .insert_conversation(&conversation(id, &sender))
            .await
            .unwrap();
    }
    for (size, batches) in [(1usize, 200usize), (64, 40), (512, 12)] {
        let work: Vec<Vec<MessageAccepted>> = (0..batches)
            .map(|b| {
                (0..size)
                    .map(|i| {
                        accepted(
                            &conversations[(b * size + i) % 100],
                            &sender,
                            format!("payload {b}/{i}"),
                        )
                    })
                    .collect()
            })
            .collect();
        let started = Instant::now();
        let mut stored = Vec::with_capacity(work.len());
        for batch in &work {
            stored.push(store.record_messages(batch).await.unwrap());
        }
        report("record_messages", size, batches, started.elapsed());

        // The router's other write: moving those messages to DELIVERED, in batches of the same size.
        let writes: Vec<Vec<StatusWrite>> = stored
            .into_iter()
            .map(|batch| batch.into_iter().map(delivered).collect())
            .collect();
        let started = Instant::now();
        for batch in &writes {
            let saved = store.save_statuses(batch).await.unwrap();
            assert!(saved.iter().all(|s| *s));
        }
        report("save_statuses  ", size, batches, started.elapsed());
    }
}

fn delivered(recorded: Recorded) -> StatusWrite {
    let Recorded::Stored(message) = recorded else {
        panic!("the conversation exists")
    };
    let mut next = message.clone();
    next.status = MessageStatus::Delivered;
    next.delivered_at = Some(2000);
    StatusWrite {
        from: message.status,
        message: next,
        change: StatusChange {
            status: MessageStatus::Delivered,
            at: 2000,
            detail: None,
            correlation_id: None,
        },
    }
}

fn report(what: &str, size: usize, batches: usize, elapsed: std::time::Duration) {
    let records = size * batches;
    println!(
        "{what} batch {size:>3}: {records:>5} records in {:>6.0} ms = {:>7.0} records/s ({:.2} ms per batch)",
        elapsed.as_secs_f64() * 1000.0,
        records as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / batches as f64
    );
}
