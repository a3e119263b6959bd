//! The port contract suites, and what only the embedded adapters promise: durability across a restart and a torn
//! write, reclamation of consumed records, no stray files once uploads end.

use chat4all_core::contract;
use chat4all_core::ports::{EventLog, OutgoingRecord, Stores};
use chat4all_core::time::now_millis;
use chat4all_embedded::{LocalObjects, LogOptions, SegmentLog, SqliteStore};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn segment_log_meets_the_event_log_contract() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(
        SegmentLog::open(
            &dir.path().join("events"),
            LogOptions {
                partitions: Some(4),
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
    let path = dir.path().join("events");
    let options = LogOptions {
        partitions: Some(2),
        reclaim_interval: Duration::ZERO,
        segment_bytes: 1,
        ..LogOptions::default()
    };
    let log = SegmentLog::open(&path, options.clone()).unwrap();
    let partition = batches_of(&log, "t", 0..10, 1).await;
    let mut consumer = log.consumer("g", "t", partition).await.unwrap();
    let read = consumer.poll(6, Duration::from_secs(1)).await.unwrap();
    consumer
        .commit(read.last().unwrap().offset + 1)
        .await
        .unwrap();
    log.append("t", record(10)).await.unwrap();
    reclaimed(&log).await;
    reclaimed(&log).await; // a pass reclaims a few segments: each record is one here
    log.close().await;
    assert!(
        log.append("t", record(11)).await.is_err(),
        "a closed log refuses appends"
    );

    let reopened = SegmentLog::open(&path, options.clone()).unwrap();
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

    let other_count = SegmentLog::open(
        &path,
        LogOptions {
            partitions: Some(3),
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
async fn commits_in_the_background_wait_for_their_delay_and_are_written_at_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events");
    let options = LogOptions {
        partitions: Some(1),
        reclaim_interval: Duration::ZERO,
        segment_bytes: 1,
        background_commit_delay: Duration::from_secs(3600),
        ..LogOptions::default()
    };
    let log = SegmentLog::open(&path, options.clone()).unwrap();
    log.append_batch("t", (0..10).map(record).collect())
        .await
        .unwrap();
    let mut consumer = log.consumer("g", "t", 0).await.unwrap();
    assert_eq!(
        consumer
            .poll(10, Duration::from_secs(1))
            .await
            .unwrap()
            .len(),
        10
    );
    consumer.commit_in_background(5).unwrap();
    // The next append's round runs after the commit reached the writer; the commit is not due yet.
    log.append("t", record(10)).await.unwrap();
    reclaimed(&log).await;
    assert_eq!(
        log.lag("g", "t").await.unwrap(),
        vec![11],
        "a commit in the background is held until its delay has passed"
    );
    let mut fresh = log.consumer("other", "t", 0).await.unwrap();
    assert_eq!(
        fresh.poll(100, Duration::from_secs(1)).await.unwrap()[0].offset,
        0,
        "records whose commit is only held are not reclaimed"
    );
    consumer.commit_in_background(8).unwrap();
    log.close().await;

    let reopened = SegmentLog::open(&path, options).unwrap();
    let mut resumed = reopened.consumer("g", "t", 0).await.unwrap();
    let rest = resumed.poll(100, Duration::from_secs(1)).await.unwrap();
    assert_eq!(
        rest.first().map(|r| r.offset),
        Some(8),
        "closing the log writes the commits it held"
    );
    reopened.close().await;
}

#[tokio::test]
async fn a_log_opened_without_a_partition_count_keeps_the_one_it_was_created_with() {
    let dir = tempfile::tempdir().unwrap();
    let (fresh, made) = (dir.path().join("fresh"), dir.path().join("made"));
    let new = SegmentLog::open(&fresh, LogOptions::default()).unwrap();
    assert_eq!(new.partition_count(), chat4all_embedded::DEFAULT_PARTITIONS);
    new.close().await;
    let created = LogOptions {
        partitions: Some(8),
        ..LogOptions::default()
    };
    SegmentLog::open(&made, created).unwrap().close().await;
    let reopened = SegmentLog::open(&made, LogOptions::default()).unwrap();
    assert_eq!(
        reopened.partition_count(),
        8,
        "the count it was created with"
    );
    reopened.close().await;
}

/// A one-partition log, with `live` as its live topic, keeping `per_partition` of its records.
fn log_with_live_topic(path: &std::path::Path, per_partition: usize) -> SegmentLog {
    SegmentLog::open(
        path,
        LogOptions {
            partitions: Some(1),
            reclaim_interval: Duration::ZERO,
            segment_bytes: 1,
            live_topics: ["live".to_owned()].into(),
            live_records_per_partition: per_partition,
            ..LogOptions::default()
        },
    )
    .unwrap()
}

#[tokio::test]
async fn a_live_topic_reaches_its_tails_from_memory_and_never_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events");
    let log = log_with_live_topic(&path, 4);
    let mut tail = log.tail("live").await.unwrap();
    let offsets = |records: Vec<chat4all_core::ports::Record>| {
        records.iter().map(|r| r.offset).collect::<Vec<_>>()
    };
    log.append_batch("live", (0..3).map(record).collect())
        .await
        .unwrap();
    let read = tail.poll(100, Duration::from_secs(1)).await.unwrap();
    assert_eq!(offsets(read.clone()), [0, 1, 2]);
    assert_eq!(read[2].header("h"), Some("2"));
    assert_eq!(read[2].payload, vec![2; 10]);

    log.append_batch("live", (3..10).map(record).collect())
        .await
        .unwrap();
    assert_eq!(
        offsets(tail.poll(100, Duration::ZERO).await.unwrap()),
        [6, 7, 8, 9],
        "a tail left behind carries on from the oldest record kept in memory"
    );
    let refused = log.consumer("g", "live", 0).await.err().unwrap();
    assert!(refused.to_string().contains("live topic"), "{refused}");
    assert!(log.subscribe("g", "live", "m").await.is_err());
    log.close().await;
    assert_eq!(
        live_records_on_disk(&dir).await,
        0,
        "nothing of a live topic was written to the file"
    );
}

#[tokio::test]
async fn records_of_a_topic_that_became_live_are_reclaimed_from_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events");
    let before = reclaiming_log(&dir, LogOptions::default().retention);
    before
        .append_batch("live", (0..5).map(record).collect())
        .await
        .unwrap();
    before.close().await;

    let live = log_with_live_topic(&path, 16);
    // Records are stamped in milliseconds: past the next tick, every record on disk is older than "now".
    let stamped = chat4all_core::time::now_millis();
    while chat4all_core::time::now_millis() == stamped {
        tokio::task::yield_now().await;
    }
    let next = live.append("live", record(5)).await.unwrap();
    assert_eq!(next.offset, 5, "offsets continue from the disk's");
    reclaimed(&live).await;
    live.close().await;
    assert_eq!(
        live_records_on_disk(&dir).await,
        0,
        "every record of the topic left the disk"
    );
}

/// How many records of the topic "live" the file holds, read by a log for which the topic is not live.
async fn live_records_on_disk(dir: &tempfile::TempDir) -> usize {
    let durable = reclaiming_log(dir, LogOptions::default().retention);
    let mut reader = durable.consumer("reader", "live", 0).await.unwrap();
    let held = reader.poll(100, Duration::ZERO).await.unwrap().len();
    durable.close().await;
    held
}

#[tokio::test]
async fn retention_reclaims_the_expired_records_and_keeps_the_younger_ones() {
    let dir = tempfile::tempdir().unwrap();
    let retention = Duration::from_secs(2);
    let log = reclaiming_log(&dir, retention);
    log.append_batch("t", (0..5).map(record).collect())
        .await
        .unwrap();
    // Waiting is the point here: the first five records must grow older than the retention.
    tokio::time::sleep(retention + Duration::from_millis(100)).await;
    log.append_batch("t", (5..10).map(record).collect())
        .await
        .unwrap(); // this batch's transaction reclaims (interval zero), well within the younger records' retention
    reclaimed(&log).await;
    let mut reader = log.consumer("reader", "t", 0).await.unwrap();
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
async fn a_large_backlog_is_reclaimed_a_few_segments_per_round() {
    let dir = tempfile::tempdir().unwrap();
    let log = reclaiming_log(&dir, LogOptions::default().retention);
    batches_of(&log, "t", 0..2000, 50).await; // a segment each
    let mut consumer = log.consumer("g", "t", 0).await.unwrap();
    consumer.commit(2000).await.unwrap();
    let oldest = || {
        let log = &log;
        async move {
            let mut reader = log.consumer("reader", "t", 0).await.unwrap();
            let read = reader.poll(10_000, Duration::ZERO).await.unwrap();
            read.first().map_or(2000, |r| r.offset)
        }
    };
    let mut seen = vec![oldest().await];
    while *seen.last().unwrap() < 2000 {
        assert!(seen.len() < 30, "reclamation stalled at {seen:?}");
        reclaimed(&log).await;
        seen.push(oldest().await);
    }
    let steps: Vec<u64> = seen.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        steps.iter().all(|&step| step <= 600) && steps.len() >= 4,
        "40 committed segments go at most 4 a pass, a pass after each round: a step sees the passes of its two \
         rounds and perhaps the one running after them: {steps:?}"
    );
    let next = log.append("t", record(0)).await.unwrap();
    assert_eq!(
        next.offset, 2000,
        "offsets continue once every segment of the partition went"
    );
    log.close().await;
    let files: Vec<_> = std::fs::read_dir(dir.path().join("events"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let spares = files
        .iter()
        .filter(|name| name.starts_with("spare-"))
        .count();
    assert!(
        spares <= 2 && files.len() - spares < 40,
        "the reclaimed segments' files were deleted or kept as at most two spares: {files:?}"
    );
}

#[tokio::test]
async fn a_reader_behind_reclaimed_records_resumes_at_the_oldest_kept_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = reclaiming_log(&dir, LogOptions::default().retention);
    batches_of(&log, "t", 0..30, 5).await;
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

/// Appends `records` to `topic` `per_batch` at a time, each append waiting for the one before: each is then a batch
/// of its own, the unit in which records are reclaimed. Returns the partition of the records (all have one key).
async fn batches_of(
    log: &SegmentLog,
    topic: &str,
    records: std::ops::Range<usize>,
    per_batch: usize,
) -> u32 {
    let mut partition = 0;
    for first in records.clone().step_by(per_batch) {
        let last = (first + per_batch).min(records.end);
        let positions = log
            .append_batch(topic, (first..last).map(record).collect())
            .await
            .unwrap();
        partition = positions[0].partition;
    }
    partition
}

#[tokio::test]
async fn a_segment_is_reclaimed_only_once_all_of_it_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let log = reclaiming_log(&dir, LogOptions::default().retention);
    batches_of(&log, "t", 0..20, 10).await;
    let mut done = log.consumer("g", "t", 0).await.unwrap();
    let oldest = || async {
        let mut fresh = log.consumer("fresh", "t", 0).await.unwrap();
        fresh.poll(100, Duration::ZERO).await.unwrap()[0].offset
    };
    done.commit(9).await.unwrap();
    reclaimed(&log).await;
    assert_eq!(
        oldest().await,
        0,
        "one record of the first batch is not committed yet"
    );
    done.commit(15).await.unwrap();
    reclaimed(&log).await;
    assert_eq!(
        oldest().await,
        10,
        "the first segment went whole, the second stays"
    );
    done.commit(20).await.unwrap();
    reclaimed(&log).await;
    let mut fresh = log.consumer("fresh", "t", 0).await.unwrap();
    assert!(fresh.poll(100, Duration::ZERO).await.unwrap().is_empty());
    log.close().await;
    let reopened = reclaiming_log(&dir, LogOptions::default().retention);
    assert_eq!(
        reopened.append("t", record(20)).await.unwrap().offset,
        20,
        "a partition's end survives its records' reclamation and a restart"
    );
    reopened.close().await;
}

#[tokio::test]
async fn a_large_append_reads_back_whole_from_any_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = reclaiming_log(&dir, LogOptions::default().retention);
    log.append_batch("t", (0..2500).map(record).collect())
        .await
        .unwrap(); // more than one batch holds
    let mut consumer = log.consumer("g", "t", 0).await.unwrap();
    let mut offsets = Vec::new();
    loop {
        let polled = consumer.poll(700, Duration::ZERO).await.unwrap();
        if polled.is_empty() {
            break;
        }
        offsets.extend(polled.iter().map(|r| r.offset));
    }
    assert_eq!(offsets, (0..2500).collect::<Vec<u64>>());
    log.close().await;
}

#[tokio::test]
async fn a_sqlite_log_of_one_row_a_record_is_converted_to_segments_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    {
        // The layout of earlier builds, with 1,200 records in partition 0 (offsets 100 to 1,299: the first 100
        // reclaimed), 3 in partition 1 and a group's committed offset.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
             INSERT INTO meta VALUES ('partitions', '2');
             CREATE TABLE records (
                 topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
                 key TEXT NOT NULL, headers TEXT NOT NULL, payload BLOB NOT NULL, ts INTEGER NOT NULL,
                 PRIMARY KEY (topic, partition, offset)
             ) WITHOUT ROWID;
             CREATE TABLE offsets (
                 grp TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
                 PRIMARY KEY (grp, topic, partition)
             ) WITHOUT ROWID;
             INSERT INTO offsets VALUES ('g', 't', 0, 1000);",
        )
        .unwrap();
        let mut insert = conn
            .prepare("INSERT INTO records VALUES ('t', ?1, ?2, 'k', ?3, ?4, ?5)")
            .unwrap();
        let rows = (100..1300).map(|o| (0, o)).chain((0..3).map(|o| (1, o)));
        for (partition, offset) in rows {
            let headers = format!(r#"[["h","{offset}"]]"#);
            insert
                .execute(rusqlite::params![
                    partition,
                    offset,
                    headers,
                    vec![7u8; 5],
                    now_millis()
                ])
                .unwrap();
        }
    }
    let log = SegmentLog::open(&dir.path().join("events"), LogOptions::default()).unwrap();
    assert!(!path.exists(), "the SQLite file is gone once converted");
    let mut resumed = log.consumer("g", "t", 0).await.unwrap();
    let rest = resumed.poll(1000, Duration::ZERO).await.unwrap();
    assert_eq!(
        rest.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (1000..1300).collect::<Vec<_>>(),
        "the group resumes where it committed"
    );
    assert_eq!(
        (rest[0].header("h"), rest[0].payload.as_slice()),
        (Some("1000"), [7u8; 5].as_slice())
    );
    let mut fresh = log.consumer("fresh", "t", 0).await.unwrap();
    let all = fresh.poll(10_000, Duration::ZERO).await.unwrap();
    assert_eq!(all.first().map(|r| r.offset), Some(100));
    assert_eq!(all.len(), 1200);
    let mut other = log.consumer("fresh", "t", 1).await.unwrap();
    assert_eq!(other.poll(10, Duration::ZERO).await.unwrap().len(), 3);
    let next = log.append("t", record(0)).await.unwrap();
    assert_eq!(
        next.offset,
        if next.partition == 0 { 1300 } else { 3 },
        "offsets continue"
    );
    log.close().await;
    let reopened = SegmentLog::open(&dir.path().join("events"), LogOptions::default()).unwrap();
    let mut again = reopened.consumer("fresh", "t", 0).await.unwrap();
    assert_eq!(
        again.poll(10_000, Duration::ZERO).await.unwrap().len(),
        1200 + usize::from(next.partition == 0)
    );
    reopened.close().await;
}

/// A one-partition log that writes each round to a segment of its own and reclaims after every round (interval
/// zero), keeping records for `retention`.
fn reclaiming_log(dir: &tempfile::TempDir, retention: Duration) -> SegmentLog {
    SegmentLog::open(
        &dir.path().join("events"),
        LogOptions {
            partitions: Some(1),
            reclaim_interval: Duration::ZERO,
            segment_bytes: 1,
            retention,
            ..LogOptions::default()
        },
    )
    .unwrap()
}

/// Waits until a reclamation pass has run after the last answered request: the writer reclaims after each round
/// (with the interval zero, a new pass each round), before it takes the next, so once a second append is answered
/// the pass after the first has run. The first append closes the segment of the requests before.
async fn reclaimed(log: &SegmentLog) {
    log.append("other", record(0)).await.unwrap();
    log.append("other", record(0)).await.unwrap();
}

#[tokio::test]
async fn a_write_torn_by_a_crash_is_ignored_and_the_log_goes_on_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events");
    let options = LogOptions {
        partitions: Some(1),
        ..LogOptions::default()
    };
    let log = SegmentLog::open(&path, options.clone()).unwrap();
    batches_of(&log, "t", 0..30, 10).await;
    log.close().await;
    // A crash in the middle of the next round's write: a frame's head and part of its body.
    let newest = std::fs::read_dir(&path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "segment"))
        .max()
        .unwrap();
    let mut torn = std::fs::OpenOptions::new()
        .append(true)
        .open(&newest)
        .unwrap();
    std::io::Write::write_all(&mut torn, &[200, 0, 0, 0, 1, 2, 3, 4, 1, 9, 9]).unwrap();
    drop(torn);

    let reopened = SegmentLog::open(&path, options.clone()).unwrap();
    assert_eq!(reopened.append("t", record(30)).await.unwrap().offset, 30);
    reopened.close().await;
    let again = SegmentLog::open(&path, options).unwrap();
    let mut reader = again.consumer("reader", "t", 0).await.unwrap();
    let read = reader.poll(100, Duration::ZERO).await.unwrap();
    assert_eq!(
        read.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (0..31).collect::<Vec<u64>>(),
        "every record before the torn write and after it"
    );
    assert_eq!(read[30].header("h"), Some("30"));
    again.close().await;
}

#[tokio::test]
async fn records_no_group_commits_are_moved_so_that_their_segments_can_go() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events");
    let options = LogOptions {
        partitions: Some(1),
        reclaim_interval: Duration::ZERO,
        segment_bytes: 2000, // a few rounds a segment
        ..LogOptions::default()
    };
    let log = SegmentLog::open(&path, options.clone()).unwrap();
    for i in 0..40 {
        log.append_batch("busy", (0..10).map(record).collect())
            .await
            .unwrap();
        log.append("parked", record(i)).await.unwrap(); // as dead letters: no group commits them
    }
    let segments = || {
        std::fs::read_dir(&path)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|e| e == "segment")
            })
            .count()
    };
    let written = segments();
    let mut consumer = log.consumer("g", "busy", 0).await.unwrap();
    consumer.commit(400).await.unwrap();
    for _ in 0..written {
        reclaimed(&log).await;
    }
    assert!(
        segments() * 3 < written,
        "{written} segments, {} left: the parked records were moved out of the others' way",
        segments()
    );
    let parked = |log: SegmentLog| async move {
        let mut reader = log.consumer("reader", "parked", 0).await.unwrap();
        let read = reader.poll(100, Duration::ZERO).await.unwrap();
        log.close().await;
        read.iter()
            .map(|r| (r.offset, r.header("h").unwrap().to_owned()))
            .collect::<Vec<_>>()
    };
    let expected: Vec<_> = (0..40).map(|i| (i as u64, i.to_string())).collect();
    assert_eq!(parked(log).await, expected, "every parked record, in order");
    let reopened = SegmentLog::open(&path, options).unwrap();
    assert_eq!(
        parked(reopened).await,
        expected,
        "and after a restart, from where they were moved"
    );
}
