//! Throughput of the two hot storage paths, on a real file in a temporary directory:
//! durable appends (200-byte records, 1/8/64 concurrent appenders) and message inserts.
//!
//! `cargo bench -p chat4all-embedded --bench storage` (each case runs for `BENCH_SECONDS`, default 3).

use chat4all_core::events::MessageAccepted;
use chat4all_core::ids::{ConversationId, MessageId, UserId};
use chat4all_core::model::{Conversation, ConversationKind};
use chat4all_core::ports::{ConversationStore, EventLog, MessageStore, OutgoingRecord, Recorded};
use chat4all_embedded::{LogOptions, SqliteLog, SqliteStore};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn main() {
    let seconds = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let run_for = Duration::from_secs(seconds);
        println!("storage benchmark, {} cores, {seconds} s per case", std::thread::available_parallelism().map_or(1, |n| n.get()));
        for appenders in [1, 8, 64] {
            let rate = durable_appends(appenders, run_for).await;
            println!("durable appends, {appenders:>2} concurrent appenders, 200 B records: {rate:>9.0} appends/s");
        }
        for batch in [1, 64, 512] {
            let rate = message_inserts(batch, run_for).await;
            println!("message inserts, {batch:>3} per transaction: {rate:>9.0} messages/s");
        }
    });
}

async fn durable_appends(appenders: usize, run_for: Duration) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let log =
        Arc::new(SqliteLog::open(&dir.path().join("events.db"), LogOptions::default()).unwrap());
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + run_for;
    let tasks: Vec<_> = (0..appenders)
        .map(|task| {
            let (log, done) = (log.clone(), done.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while Instant::now() < deadline {
                    let record = OutgoingRecord {
                        key: format!("conversation-{task}-{}", i % 16),
                        headers: vec![("event-type".into(), "bench".into())],
                        payload: vec![b'x'; 200],
                    };
                    log.append("bench", record).await.unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    log.close().await;
    rate
}

async fn message_inserts(batch: usize, run_for: Duration) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("store.db")).unwrap();
    let sender = UserId::generate();
    let conversations: Vec<ConversationId> = (0..100)
        .map(|i| ConversationId::parse(format!("bench-{i}")).unwrap())
        .collect();
    for id in &conversations {
        let conversation = Conversation {
            conversation_id: id.clone(),
            kind: ConversationKind::Group,
            name: None,
            members: vec![sender.clone()],
            created_at: 0,
            created_by: sender.clone(),
        };
        store.insert_conversation(&conversation).await.unwrap();
    }
    let started = Instant::now();
    let mut inserted = 0usize;
    while started.elapsed() < run_for {
        let messages: Vec<MessageAccepted> = (0..batch)
            .map(|i| MessageAccepted {
                message_id: MessageId::generate(),
                conversation_id: conversations[(inserted + i) % conversations.len()].clone(),
                sender_id: sender.clone(),
                recipient_id: None,
                content: "x".repeat(200),
                file_id: None,
                expires_at: None,
                via: None,
                timestamp: 0,
            })
            .collect();
        let recorded = store.record_messages(&messages).await.unwrap();
        assert!(recorded.iter().all(|r| matches!(r, Recorded::Stored(_))));
        inserted += recorded.len();
    }
    inserted as f64 / started.elapsed().as_secs_f64()
}
