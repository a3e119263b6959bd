//! The port contract suites, and what only the embedded adapters promise: durability across a restart,
//! reclamation of consumed records, no stray files once uploads end.

use chat4all_core::contract;
use chat4all_core::ports::{EventLog, OutgoingRecord, Stores};
use chat4all_embedded::{LocalObjects, LogOptions, SqliteLog, SqliteStore};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn sqlite_log_meets_the_event_log_contract() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(
        SqliteLog::open(
            &dir.path().join("events.db"),
            LogOptions {
                partitions: 4,
                ..LogOptions::default()
            },
        )
        .unwrap(),
    );
    contract::log::run_all(log.clone()).await;
    log.close().await;
}

#[tokio::test]
async fn sqlite_store_meets_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract::store::run_all(Stores::all_in(Arc::new(
        SqliteStore::open(&dir.path().join("store.db")).unwrap(),
    )))
    .await;
}

#[tokio::test]
async fn sqlite_store_behind_the_conversation_cache_meets_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract::store::run_all(
        Stores::all_in(Arc::new(
            SqliteStore::open(&dir.path().join("store.db")).unwrap(),
        ))
        .with_conversation_cache(),
    )
    .await;
}

#[tokio::test]
async fn local_objects_meet_the_object_storage_contract_and_leave_no_stray_files() {
    let dir = tempfile::tempdir().unwrap();
    contract::objects::run_all(Arc::new(LocalObjects::open(dir.path()).unwrap())).await;
    for work_area in [".staging", ".uploads"] {
        let left: Vec<_> = std::fs::read_dir(dir.path().join(work_area))
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert!(
            left.is_empty(),
            "every writer and staged upload of the suite ended, yet {work_area} holds {left:?}"
        );
    }
}

fn record(i: usize) -> OutgoingRecord {
    OutgoingRecord {
        key: "k".into(),
        headers: vec![("h".into(), i.to_string())],
        payload: vec![i as u8; 10],
    }
}

#[tokio::test]
async fn the_log_survives_a_restart_and_reclaims_consumed_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let options = LogOptions {
        partitions: 2,
        reclaim_interval: Duration::ZERO,
        ..LogOptions::default()
    };
    let log = SqliteLog::open(&path, options.clone()).unwrap();
    let positions = log
        .append_batch("t", (0..10).map(record).collect())
        .await
        .unwrap();
    let partition = positions[0].partition;
    let mut consumer = log.consumer("g", "t", partition).await.unwrap();
    let read = consumer.poll(6, Duration::from_secs(1)).await.unwrap();
    consumer
        .commit(read.last().unwrap().offset + 1)
        .await
        .unwrap();
    log.append("t", record(10)).await.unwrap(); // the next write's transaction reclaims (interval zero)
    log.close().await;
    assert!(
        log.append("t", record(11)).await.is_err(),
        "a closed log refuses appends"
    );

    let reopened = SqliteLog::open(&path, options.clone()).unwrap();
    let mut resumed = reopened.consumer("g", "t", partition).await.unwrap();
    let rest = resumed.poll(100, Duration::from_secs(1)).await.unwrap();
    assert_eq!(
        rest.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (6..=10).collect::<Vec<_>>(),
        "resumes after the commit"
    );
    assert_eq!(rest[0].header("h"), Some("6"));
    let mut fresh = reopened
        .consumer("new-group", "t", partition)
        .await
        .unwrap();
    let retained = fresh.poll(100, Duration::from_secs(1)).await.unwrap();
    assert_eq!(
        retained.first().map(|r| r.offset),
        Some(6),
        "records every group committed were reclaimed"
    );
    let next = reopened.append("t", record(12)).await.unwrap();
    assert_eq!(next.offset, 11, "offsets continue after a restart");
    reopened.close().await;

    let other_count = SqliteLog::open(
        &path,
        LogOptions {
            partitions: 3,
            ..options
        },
    );
    assert!(
        other_count
            .err()
            .unwrap()
            .to_string()
            .contains("created with 2 partitions")
    );
}

#[tokio::test]
async fn a_topic_with_its_own_retention_expires_without_any_group() {
    let dir = tempfile::tempdir().unwrap();
    let log = reclaiming_log(&dir, [("live".to_owned(), Duration::ZERO)]);
    for topic in ["live", "kept"] {
        log.append_batch(topic, (0..5).map(record).collect())
            .await
            .unwrap();
    }
    // Records are stamped in milliseconds: past the next tick, every "live" record is older than zero retention.
    let stamped = chat4all_core::time::now_millis();
    while chat4all_core::time::now_millis() == stamped {
        tokio::task::yield_now().await;
    }
    log.append("other", record(0)).await.unwrap(); // this batch's transaction reclaims (interval zero)
    reclaimed(&log).await;
    let remaining = |topic: &'static str| {
        let log = &log;
        async move {
            let mut reader = log.consumer("reader", topic, 0).await.unwrap();
            let records = reader.poll(100, Duration::ZERO).await.unwrap();
            records.iter().map(|r| r.offset).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        remaining("live").await,
        [4],
        "expired records go, the partition's last stays"
    );
    assert_eq!(remaining("kept").await, [0, 1, 2, 3, 4]);
    log.close().await;
}

#[tokio::test]
async fn retention_reclaims_the_expired_records_and_keeps_the_younger_ones() {
    let dir = tempfile::tempdir().unwrap();
    let retention = Duration::from_secs(2);
    let log = reclaiming_log(&dir, [("live".to_owned(), retention)]);
    log.append_batch("live", (0..5).map(record).collect())
        .await
        .unwrap();
    // Waiting is the point here: the first five records must grow older than the retention.
    tokio::time::sleep(retention + Duration::from_millis(100)).await;
    log.append_batch("live", (5..10).map(record).collect())
        .await
        .unwrap(); // this batch's transaction reclaims (interval zero), well within the younger records' retention
    reclaimed(&log).await;
    let mut reader = log.consumer("reader", "live", 0).await.unwrap();
    let left: Vec<u64> = reader
        .poll(100, Duration::ZERO)
        .await
        .unwrap()
        .iter()
        .map(|r| r.offset)
        .collect();
    assert_eq!(left, (5..10).collect::<Vec<_>>());
    log.close().await;
}

#[tokio::test]
async fn a_large_backlog_is_reclaimed_a_bounded_slice_per_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = reclaiming_log(&dir, []);
    log.append_batch("t", (0..2000).map(record).collect())
        .await
        .unwrap();
    let mut consumer = log.consumer("g", "t", 0).await.unwrap();
    consumer.commit(2000).await.unwrap();
    let oldest = || {
        let log = &log;
        async move {
            let mut reader = log.consumer("reader", "t", 0).await.unwrap();
            reader.poll(10_000, Duration::ZERO).await.unwrap()[0].offset
        }
    };
    let mut seen = vec![oldest().await];
    while *seen.last().unwrap() < 1999 {
        assert!(seen.len() < 20, "reclamation stalled at {seen:?}");
        log.append("other", record(0)).await.unwrap();
        seen.push(oldest().await);
    }
    let steps: Vec<u64> = seen.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        steps.iter().all(|&step| step <= 512) && steps.len() >= 4,
        "2,000 committed records go in slices of at most 512 per batch, one batch after another: {steps:?}"
    );
    log.close().await;
}

#[tokio::test]
async fn a_reader_behind_reclaimed_records_resumes_at_the_oldest_kept_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = reclaiming_log(&dir, []);
    log.append_batch("t", (0..30).map(record).collect())
        .await
        .unwrap();
    let mut done = log.consumer("g", "t", 0).await.unwrap();
    done.commit(20).await.unwrap();
    reclaimed(&log).await;
    // "late" never committed: it starts at offset 0, long reclaimed, and reads 5 offsets at a time.
    let mut late = log.consumer("late", "t", 0).await.unwrap();
    let mut polls = 0;
    let first = loop {
        polls += 1;
        assert!(polls <= 10, "no record after {polls} polls");
        if let Some(record) = late.poll(5, Duration::ZERO).await.unwrap().first() {
            break record.offset;
        }
    };
    assert_eq!(
        first, 20,
        "the reader carries on from the oldest record kept"
    );
    log.close().await;
}

/// A one-partition log that reclaims in every batch (interval zero), with per-topic retention.
fn reclaiming_log<const N: usize>(
    dir: &tempfile::TempDir,
    retention_by_topic: [(String, Duration); N],
) -> SqliteLog {
    SqliteLog::open(
        &dir.path().join("events.db"),
        LogOptions {
            partitions: 1,
            reclaim_interval: Duration::ZERO,
            retention_by_topic: retention_by_topic.into(),
            ..LogOptions::default()
        },
    )
    .unwrap()
}

/// Waits until a reclamation has run after the last answered append: each batch's transaction reclaims (with the
/// interval zero, a new pass each batch), so once the next append is answered, so is that reclamation.
async fn reclaimed(log: &SqliteLog) {
    log.append("other", record(0)).await.unwrap();
}
