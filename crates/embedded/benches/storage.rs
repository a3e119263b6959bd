//! The hot storage paths, on a real file in a temporary directory: durable appends (200-byte records, 1/8/64
//! concurrent appenders), message inserts, the router's batches (stored, DELIVERED to a user, announced), and
//! history pages in a large store (latency percentiles).
//!
//! `cargo bench -p chat4all-embedded --bench storage` (each throughput case runs for `BENCH_SECONDS`, default 3).
//! `BENCH_CASES=appends,inserts,route,history` picks cases; `HISTORY_MESSAGES` sizes the history store (default
//! 1,000,000 messages over 1,000 conversations).

use chat4all_core::envelope::encode;
use chat4all_core::events::{MessageAccepted, Topics};
use chat4all_core::ids::{ConversationId, CorrelationId, MessageId, UserId, Username};
use chat4all_core::model::{Conversation, ConversationKind, HistoryQuery, User};
use chat4all_core::ports::{
    AccountStore, ConversationStore, EventLog, MessageStore, OutgoingRecord, Record, Recorded,
    Stores,
};
use chat4all_core::services::routing::Router;
use chat4all_embedded::{LogOptions, SegmentLog, SqliteStore};
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
        if selected("appends") {
            for appenders in [1, 8, 64] {
                let rate = durable_appends(appenders, run_for).await;
                println!("durable appends, {appenders:>2} concurrent appenders, 200 B records: {rate:>9.0} appends/s");
            }
        }
        if selected("inserts") {
            for batch in [1, 64, 512] {
                let rate = message_inserts(batch, run_for).await;
                println!("message inserts, {batch:>3} per transaction: {rate:>9.0} messages/s");
            }
        }
        if selected("route") {
            for batch in [64, 1024] {
                let (rate, cpu_us) = routed_batches(batch, run_for).await;
                println!("router batches of {batch:>4} (stored, delivered, announced): {rate:>9.0} messages/s, {cpu_us:>5.1} µs CPU a message");
            }
        }
        if selected("history") {
            let total = std::env::var("HISTORY_MESSAGES")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(1_000_000);
            history_pages(total).await;
        }
    });
}

async fn durable_appends(appenders: usize, run_for: Duration) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let log =
        Arc::new(SegmentLog::open(&dir.path().join("events"), LogOptions::default()).unwrap());
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

/// A store in `dir` with `count` conversations of one sender.
async fn store_with_conversations(
    dir: &std::path::Path,
    count: usize,
) -> (SqliteStore, UserId, Vec<ConversationId>) {
    let store = SqliteStore::open(&dir.join("store.db")).unwrap();
    let sender = UserId::generate();
    let conversations: Vec<ConversationId> = (0..count)
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
    (store, sender, conversations)
}

/// Records `batch` messages in one transaction, spread round-robin over `conversations` from `first` on.
async fn record_batch(
    store: &SqliteStore,
    sender: &UserId,
    conversations: &[ConversationId],
    first: usize,
    batch: usize,
) -> usize {
    let messages: Vec<MessageAccepted> = (0..batch)
        .map(|i| MessageAccepted {
            message_id: MessageId::generate(),
            conversation_id: conversations[(first + i) % conversations.len()].clone(),
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
    recorded.len()
}

async fn message_inserts(batch: usize, run_for: Duration) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let (store, sender, conversations) = store_with_conversations(dir.path(), 100).await;
    let started = Instant::now();
    let mut inserted = 0usize;
    while started.elapsed() < run_for {
        inserted += record_batch(&store, &sender, &conversations, inserted, batch).await;
    }
    inserted as f64 / started.elapsed().as_secs_f64()
}

/// The router's work on batches of `batch` accepted messages to a user over 100 conversations: store each with
/// its `seq`, settle it DELIVERED and append its notifications. Returns messages/s and the process's CPU time
/// (user and system, all threads) per message.
async fn routed_batches(batch: usize, run_for: Duration) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let (store, sender, conversations) = store_with_conversations(dir.path(), 100).await;
    let recipient = User {
        user_id: UserId::generate(),
        username: Username::parse("bench-recipient").unwrap(),
        email: None,
        created_at: 0,
    };
    store.insert_user(&recipient, "not a hash").await.unwrap();
    let log =
        Arc::new(SegmentLog::open(&dir.path().join("events"), LogOptions::default()).unwrap());
    let router = Router::new(
        &Stores::all_in(Arc::new(store)),
        log.clone(),
        Topics::default(),
        [],
    );
    let correlation = CorrelationId::from_header_or_new(None);
    let (started, cpu_before) = (Instant::now(), cpu_seconds());
    let mut routed = 0usize;
    while started.elapsed() < run_for {
        let records: Vec<Record> = (routed..routed + batch)
            .map(|i| {
                let accepted = MessageAccepted {
                    message_id: MessageId::generate(),
                    conversation_id: conversations[i % conversations.len()].clone(),
                    sender_id: sender.clone(),
                    recipient_id: Some(recipient.user_id.to_string()),
                    content: "hello from the performance run".into(),
                    file_id: None,
                    expires_at: None,
                    via: None,
                    timestamp: 0,
                };
                let outgoing = encode(&accepted, &correlation);
                Record {
                    partition: 0,
                    offset: i as u64,
                    key: outgoing.key,
                    headers: outgoing.headers,
                    payload: outgoing.payload,
                    timestamp: 0,
                }
            })
            .collect();
        let outcome = router.route_messages(&records).await.unwrap();
        assert_eq!(outcome.applied, batch, "every message is delivered");
        routed += batch;
    }
    let (elapsed, cpu) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu_before);
    log.close().await;
    (routed as f64 / elapsed, cpu / routed as f64 * 1e6)
}

/// CPU time this process has used (user and system), from `/proc/self/stat` (in ticks of 1/100 s, USER_HZ on Linux).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// Fills a store with `total` messages over 1,000 conversations, then times pages of 50 as the API asks for them:
/// the newest page, a page before a random `seq` (scrolling back) and one after it (catching up).
async fn history_pages(total: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (store, sender, conversations) = store_with_conversations(dir.path(), 1_000).await;
    let started = Instant::now();
    let mut inserted = 0usize;
    while inserted < total {
        inserted += record_batch(
            &store,
            &sender,
            &conversations,
            inserted,
            512.min(total - inserted),
        )
        .await;
        if inserted.is_multiple_of(102_400) {
            eprint!("\rfilling the history store: {inserted}/{total}");
        }
    }
    eprintln!();
    println!(
        "history store: {inserted} messages over {} conversations, filled at {:.0} messages/s",
        conversations.len(),
        inserted as f64 / started.elapsed().as_secs_f64()
    );
    let per_conversation = (total / conversations.len()).max(1) as u64;
    let mut random = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |below: u64| {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random % below
    };
    for (name, pick) in [
        ("newest page", 0),
        ("page before a random seq", 1),
        ("page after a random seq", 2),
    ] {
        let mut took = Vec::with_capacity(2_000);
        for _ in 0..2_000 {
            let conversation = &conversations[next(conversations.len() as u64) as usize];
            let seq = 1 + next(per_conversation);
            let query = HistoryQuery {
                limit: 50,
                offset: 0,
                after: (pick == 2).then_some(seq),
                before: (pick == 1).then_some(seq),
                ascending: pick == 2,
            };
            let start = Instant::now();
            let page = store.history(conversation, &query).await.unwrap();
            took.push(start.elapsed());
            assert!(pick != 0 || page.messages.len() == 50.min(per_conversation as usize));
        }
        took.sort();
        let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
        println!(
            "history, {name}, 50 per page: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            at(0.5),
            at(0.99),
            at(1.0)
        );
    }
}

fn selected(case: &str) -> bool {
    std::env::var("BENCH_CASES").map_or(true, |cases| cases.split(',').any(|c| c.trim() == case))
}
