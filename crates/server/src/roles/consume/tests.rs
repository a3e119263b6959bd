use super::batch::top_up;
use super::together::together;
use super::*;
use chat4all_core::ports::OutgoingRecord;
use chat4all_embedded::{LogOptions, SegmentLog};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// What the members processed: (member, payload), and a running count to wait on.
struct Seen {
    records: Mutex<Vec<(usize, String)>>,
    count: watch::Sender<usize>,
}

fn handler(seen: Arc<Seen>, member: usize) -> BatchHandler {
    Arc::new(move |records| {
        let seen = seen.clone();
        async move {
            let payloads = records
                .iter()
                .map(|r| (member, String::from_utf8_lossy(&r.payload).into_owned()));
            let added = {
                let mut all = seen.records.lock().unwrap();
                all.extend(payloads);
                records.len()
            };
            seen.count.send_modify(|n| *n += added);
            Ok(())
        }
        .boxed()
    })
}

/// Appends ten records over every partition and waits until the members processed them.
async fn send_ten(log: &Arc<dyn EventLog>, seen: &Seen, sent: &mut usize) {
    let records = (0..10)
        .map(|i| OutgoingRecord {
            key: format!("k{i}"),
            headers: Vec::new(),
            payload: format!("{}", *sent + i).into_bytes(),
        })
        .collect();
    log.append_batch("t", records).await.unwrap();
    *sent += 10;
    let target = *sent;
    let mut count = seen.count.subscribe();
    tokio::time::timeout(Duration::from_secs(10), count.wait_for(|n| *n >= target))
        .await
        .expect("the members process what is appended")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_hand_partitions_over_without_losing_or_repeating_records() {
    let dir = tempfile::tempdir().unwrap();
    let (log, seen) = four_partitions(&dir);
    let first = Tasks::default();
    first
        .consume_all(&log, "g", "t", handler(seen.clone(), 0))
        .await
        .unwrap();
    let mut sent = 0;
    send_ten(&log, &seen, &mut sent).await;

    let second = Tasks::default();
    second
        .consume_all(&log, "g", "t", handler(seen.clone(), 1))
        .await
        .unwrap();
    let second_works = |seen: &Seen| seen.records.lock().unwrap().iter().any(|(m, _)| *m == 1);
    for _ in 0..50 {
        send_ten(&log, &seen, &mut sent).await;
        if second_works(&seen) {
            break;
        }
    }
    assert!(
        second_works(&seen),
        "a joining member takes over some partitions"
    );

    assert!(
        second.shutdown(Duration::from_secs(5)).await,
        "a member stops cleanly"
    );
    send_ten(&log, &seen, &mut sent).await;
    assert!(first.shutdown(Duration::from_secs(5)).await);

    assert_processed_once(&log, &seen, sent).await;
}

/// Runs whose handler panics are retried with their records, and the runner goes on: none lost, none processed
/// twice, and no partition left unread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_run_is_retried_without_losing_or_repeating_records() {
    first_runs_go_wrong(2, || panic!("a bug in the handler")).await;
}

/// Runs that fail are retried with the records they handed back: none lost, none processed twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_is_retried_without_losing_or_repeating_records() {
    first_runs_go_wrong(3, || {
        Err(ServiceError::Unavailable("the store is down".into()))
    })
    .await;
}

/// Consumes twenty records with a handler whose first `count` runs end as `wrong` ends them (an error, a
/// panic), then checks that every record was processed once and committed.
async fn first_runs_go_wrong(count: usize, wrong: fn() -> Result<(), ServiceError>) {
    let dir = tempfile::tempdir().unwrap();
    let (log, seen) = four_partitions(&dir);
    let left = Arc::new(AtomicUsize::new(count));
    let inner = handler(seen.clone(), 0);
    let misbehaving: BatchHandler = {
        let left = left.clone();
        Arc::new(move |records| {
            let goes_wrong = left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            let inner = inner.clone();
            async move {
                if goes_wrong {
                    return wrong();
                }
                inner(records).await
            }
            .boxed()
        })
    };
    let tasks = Tasks::default();
    tasks
        .consume_all(&log, "g", "t", misbehaving)
        .await
        .unwrap();
    let mut sent = 0;
    send_ten(&log, &seen, &mut sent).await;
    assert_eq!(left.load(Ordering::SeqCst), 0, "the first runs went wrong");
    send_ten(&log, &seen, &mut sent).await;
    assert!(tasks.shutdown(Duration::from_secs(5)).await);
    assert_processed_once(&log, &seen, sent).await;
}

/// A merged run that fails hands each batch its own records back (each loop commits its own partition once
/// its records succeed, so a loop holding another's records could commit what was never processed).
#[tokio::test]
async fn a_failed_merged_run_hands_each_batch_its_own_records_back() {
    let started = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let runs = Arc::new(Mutex::new(Vec::new()));
    let failing: BatchHandler = {
        let (started, release, runs) = (started.clone(), release.clone(), runs.clone());
        Arc::new(move |records: &[Record]| {
            let (started, release, runs) = (started.clone(), release.clone(), runs.clone());
            async move {
                runs.lock().unwrap().push(records.len());
                started.notify_one();
                release.acquire().await.unwrap().forget();
                Err(ServiceError::Unavailable("the store is down".into()))
            }
            .boxed()
        })
    };
    let batch = |partition: u32, count: u64| -> Vec<Record> {
        (0..count)
            .map(|offset| Record {
                partition,
                offset,
                key: String::new(),
                headers: Vec::new(),
                payload: Vec::new(),
                timestamp: 0,
            })
            .collect()
    };
    let runner = together(failing);
    let mut first = Box::pin(runner.run(batch(0, 1)));
    assert!(futures::poll!(&mut first).is_pending());
    started.notified().await;
    // The first run is under way: these two wait for it and then go through as one run.
    let (mut second, mut third) = (
        Box::pin(runner.run(batch(1, 2))),
        Box::pin(runner.run(batch(2, 3))),
    );
    assert!(futures::poll!(&mut second).is_pending());
    assert!(futures::poll!(&mut third).is_pending());
    release.add_permits(2);
    for (outcome, partition, count) in [(first, 0, 1), (second, 1, 2), (third, 2, 3)] {
        let back = outcome
            .await
            .unwrap_err()
            .records
            .expect("records handed back");
        assert_eq!(
            back,
            batch(partition, count),
            "partition {partition}'s own records"
        );
    }
    assert_eq!(
        *runs.lock().unwrap(),
        [1, 5],
        "the second and third batches ran as one"
    );
}

/// A log of four partitions in `dir`, and an empty record of what members processed.
/// A small batch takes what its partition received meanwhile, unless the loop is stopping.
#[tokio::test]
async fn a_small_batch_is_topped_up_with_what_arrived() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = four_partitions(&dir);
    let record = |payload: &str| OutgoingRecord {
        key: "k".into(),
        headers: Vec::new(),
        payload: payload.into(),
    };
    let partition = log.append("t", record("a")).await.unwrap().partition;
    let mut consumer = log.consumer("g", "t", partition).await.unwrap();
    let first = consumer.poll(10, Duration::from_secs(5)).await.unwrap();
    log.append("t", record("b")).await.unwrap();
    let stop = CancellationToken::new();
    let batch = top_up(consumer.as_mut(), first, &stop, "test").await;
    let payloads = |records: &[Record]| {
        records
            .iter()
            .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        payloads(&batch),
        ["a", "b"],
        "the record that arrived joins the batch"
    );

    log.append("t", record("c")).await.unwrap();
    stop.cancel();
    let kept = top_up(consumer.as_mut(), batch, &stop, "test").await;
    assert_eq!(
        payloads(&kept),
        ["a", "b"],
        "a stopping loop does not wait for more"
    );
    log.close().await;
}

fn four_partitions(dir: &tempfile::TempDir) -> (Arc<dyn EventLog>, Arc<Seen>) {
    let options = LogOptions {
        partitions: Some(4),
        ..LogOptions::default()
    };
    let log: Arc<dyn EventLog> =
        Arc::new(SegmentLog::open(&dir.path().join("events"), options).unwrap());
    let seen = Arc::new(Seen {
        records: Mutex::default(),
        count: watch::channel(0).0,
    });
    (log, seen)
}

/// Every one of the `sent` records was processed once and committed; closes the log.
async fn assert_processed_once(log: &Arc<dyn EventLog>, seen: &Seen, sent: usize) {
    let mut payloads: Vec<u64> = seen
        .records
        .lock()
        .unwrap()
        .iter()
        .map(|(_, p)| p.parse().unwrap())
        .collect();
    payloads.sort_unstable();
    assert_eq!(
        payloads,
        (0..sent as u64).collect::<Vec<_>>(),
        "every record processed exactly once"
    );
    assert_eq!(
        log.lag("g", "t").await.unwrap(),
        vec![0; 4],
        "everything committed"
    );
    log.close().await;
}
