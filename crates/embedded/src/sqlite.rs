//! Opening SQLite connections the same way everywhere (WAL, a sync on every commit, a busy timeout) and running
//! them from async code through `spawn_blocking`, so a slow disk never stalls the async workers.

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Opens `path` for durable use: every commit is on disk before it returns (synced with `fdatasync`, which the
/// workspace's `.cargo/config.toml` has SQLite use).
pub(crate) fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Reader connections over one database file; in WAL mode they never block the writer. At most
/// [`MAX_READERS`] read at once, each on a connection kept open for the next: more concurrent reads wait for a
/// turn without a thread, instead of each taking a blocking thread and opening (then closing) a connection with
/// its own page cache (64 busy HTTP connections had made that 126 threads, 70 open database files and 450 MiB).
pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    turns: Semaphore,
}

/// Most reads running at once, and so most reader connections open.
const MAX_READERS: usize = 8;

impl Readers {
    /// Readers of `path` (opened on demand).
    pub(crate) fn new(path: &Path) -> Arc<Self> {
        Arc::new(Self {
            path: path.to_owned(),
            idle: Mutex::new(Vec::with_capacity(MAX_READERS)),
            turns: Semaphore::new(MAX_READERS),
        })
    }

    /// Runs `work` on a pooled reader connection, once a turn is free.
    pub(crate) async fn read<T, F>(self: &Arc<Self>, work: F) -> rusqlite::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let _turn = self.turns.acquire().await.map_err(|_| closed())?;
        let pool = self.clone();
        blocking(move || {
            let pooled = lock(&pool.idle).pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => open(&pool.path)?,
            };
            let result = work(&conn);
            lock(&pool.idle).push(conn);
            result
        })
        .await
    }
}

/// The single writer connection of a database file, committing in groups: writes that arrive while one
/// transaction is being committed wait together and share the next one, each in a savepoint of its own, so a
/// burst of writes costs one fsync instead of one each (the event log's group commit, for the store). A write
/// answers only once the transaction holding it is committed; a failing write rolls back to its savepoint and
/// leaves the others of its group alone. A write alone in its group needs no savepoint (SQLite copies every page
/// changed inside one to its journal first, about 1 KiB a message the router stores): if it fails, its
/// transaction is rolled back.
pub(crate) struct Writer {
    conn: Mutex<Connection>,
    queue: Mutex<Queue>,
}

/// Writes waiting for the next group, and whether a blocking task is draining them.
#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    draining: bool,
}

/// A write: runs in the group's open transaction (or learns why there is none), in a savepoint if the flag says
/// so, and returns whether it failed and how to answer once the commit's fate is known.
type Job = Box<dyn FnOnce(Result<&Connection, String>, bool) -> (bool, Answer) + Send>;

/// Answers a write with the outcome of its group's commit.
type Answer = Box<dyn FnOnce(Result<(), String>) + Send>;

/// Most writes in one transaction, so that one group cannot hold the connection for long.
const MAX_GROUP: usize = 128;

/// Pages the write-ahead log holds before a commit copies them into the database file (SQLite's default is
/// 1,000). A checkpoint copies the newest version of each page once, however many commits rewrote it, and the
/// router rewrites the same pages all the time (the conversations' rows with their last `seq`, the right edges of
/// the tables): at goal 1's load, with an index leaf a conversation among them, the checkpoints took 7.1 % of the
/// server's CPU at 1,000 pages and 1.9 % at this window. The WAL file grows to about 32 MiB (at 4 KiB a page) and
/// stays that size.
const CHECKPOINT_PAGES: i64 = 8_000;

/// The store writer's page cache, in KiB (SQLite's default is 2,000). When each message moved its conversation's
/// end of an index (1,000 conversations: about 1,000 leaves, 4 MiB; now a run moves them, `store/order.rs`), the
/// writer read 2.1–2.5 pages a message back from the file at goal 1's load with the default, 0.8 with this
/// cache. A bigger cache costs CPU at every commit: when a page split puts its pages out of order, SQLite
/// renumbers them through a spare page number far past the end of the file, and the commit then scans the cache's
/// whole hash table to drop pages past the end (`pcache1TruncateUnsafe`). At 32 MiB that scan took 2.3–3.2 % of
/// the server's CPU; at this size 0.8–1.2 %. (The event log keeps SQLite's default for the same reason: its file
/// is small, and reclaimed pages make its splits renumber often.)
const STORE_WRITER_CACHE_KIB: i64 = 8 * 1024;

impl Writer {
    /// Opens the writer of `path`.
    pub(crate) fn open(path: &Path) -> rusqlite::Result<Arc<Self>> {
        let conn = open(path)?;
        conn.pragma_update(None, "wal_autocheckpoint", CHECKPOINT_PAGES)?;
        conn.pragma_update(None, "cache_size", -STORE_WRITER_CACHE_KIB)?;
        Ok(Arc::new(Self {
            conn: Mutex::new(conn),
            queue: Mutex::default(),
        }))
    }

    /// Runs `work` in the next group's transaction (an error undoes only its own writes) and returns its result
    /// once that transaction is committed. `work` must not begin a transaction of its own.
    pub(crate) async fn write<T, F>(self: &Arc<Self>, work: F) -> rusqlite::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.submit(Box::new(
            move |conn: Result<&Connection, String>, savepoint| {
                let result = conn.map_err(failed).and_then(|conn| {
                    if savepoint {
                        in_savepoint(conn, work)
                    } else {
                        caught(conn, work)
                    }
                });
                let failing = result.is_err();
                let answer: Answer = Box::new(move |committed| {
                    let _ = reply.send(committed.map_err(failed).and(result));
                });
                (failing, answer)
            },
        ));
        answer.await.unwrap_or_else(|_| Err(closed()))
    }

    fn submit(self: &Arc<Self>, job: Job) {
        let mut queue = lock(&self.queue);
        queue.jobs.push(job);
        if !queue.draining {
            queue.draining = true;
            let writer = self.clone();
            tokio::task::spawn_blocking(move || writer.drain());
        }
    }

    /// Commits the waiting writes group by group until none is left.
    fn drain(&self) {
        loop {
            let group = {
                let mut queue = lock(&self.queue);
                if queue.jobs.is_empty() {
                    queue.draining = false;
                    return;
                }
                let take = queue.jobs.len().min(MAX_GROUP);
                queue.jobs.drain(..take).collect::<Vec<_>>()
            };
            commit_group(&lock(&self.conn), group);
        }
    }
}

/// Runs `group` in one transaction and answers each write. A write whose error ends the whole transaction (SQLite
/// rolls back on some I/O and memory errors) fails the writes before it in the group too, and the rest start a
/// new transaction.
fn commit_group(conn: &Connection, group: Vec<Job>) {
    let alone = group.len() == 1;
    let mut answers: Vec<Answer> = Vec::with_capacity(group.len());
    for job in group {
        if conn.is_autocommit()
            && let Err(e) = conn.execute_batch("BEGIN IMMEDIATE")
        {
            job(Err(e.to_string()), false).1(Ok(()));
            continue;
        }
        let (failed, answer) = job(Ok(conn), !alone);
        if alone && failed {
            // Without a savepoint, undoing the write is undoing its transaction.
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            answer(Ok(()));
            return;
        }
        if conn.is_autocommit() {
            // This write's error ended the transaction: it answers with that error, the writes before it with
            // the loss of theirs.
            let lost = "the transaction was rolled back by a failed write of its group".to_owned();
            answers.drain(..).for_each(|a| a(Err(lost.clone())));
            answer(Ok(()));
        } else {
            answers.push(answer);
        }
    }
    if answers.is_empty() {
        return;
    }
    let committed = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
    if committed.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for answer in answers {
        answer(committed.clone());
    }
}

/// Runs `work` inside a savepoint: kept if it succeeds, undone if it fails or panics.
fn in_savepoint<T>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.execute_batch("SAVEPOINT write")?;
    let result = caught(conn, work);
    let end = match result {
        Ok(_) => "RELEASE write",
        Err(_) => "ROLLBACK TO write; RELEASE write",
    };
    // After an error that ended the transaction there is no savepoint left to end; the caller sees that.
    let _ = conn.execute_batch(end);
    result
}

/// Runs `work`, a panic turned into an error.
fn caught<T>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(conn)))
        .unwrap_or_else(|_| Err(failed("the write panicked".into())))
}

fn failed(why: String) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(why.into())
}

fn closed() -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure("the database connections are closed".into())
}

/// Locks a mutex, carrying on after a panic elsewhere (the connection itself stays consistent: SQLite rolls back
/// an unfinished transaction).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> rusqlite::Result<T> + Send + 'static,
) -> rusqlite::Result<T> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(rusqlite::Error::ToSqlConversionFailure(
            format!("database task failed: {e}").into(),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Waker};

    /// Polls `write` once, which queues it on the writer.
    fn queue<T>(write: &mut Pin<Box<impl Future<Output = T>>>) {
        let pending = write.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        assert!(pending.is_pending(), "the writer is held");
    }

    /// A writer of a new database with one table `t` of integers (and the directory that holds it).
    async fn table() -> (tempfile::TempDir, Arc<Writer>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let writer = Writer::open(&dir.path().join("t.db")).expect("open");
        writer
            .write(|conn| conn.execute_batch("CREATE TABLE t (v INTEGER PRIMARY KEY)"))
            .await
            .expect("create");
        (dir, writer)
    }

    /// The committed rows of `t`.
    async fn rows(writer: &Arc<Writer>) -> Vec<i64> {
        writer
            .write(|conn| {
                conn.prepare("SELECT v FROM t ORDER BY v")?
                    .query_map([], |r| r.get(0))?
                    .collect()
            })
            .await
            .expect("read")
    }

    /// Adds about `pages` pages to table `pages` of `writer`, in commits of 50.
    async fn fill(writer: &Arc<Writer>, pages: i64) {
        for _ in 0..pages / 50 {
            writer
                .write(|conn| {
                    let mut insert =
                        conn.prepare_cached("INSERT INTO pages VALUES (zeroblob(4000))")?;
                    (0..50).try_for_each(|_| insert.execute([]).map(drop))
                })
                .await
                .expect("insert");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_is_checkpointed_past_sqlites_default_window() {
        let dir = tempfile::tempdir().expect("temp dir");
        let writer = Writer::open(&dir.path().join("t.db")).expect("open");
        writer
            .write(|conn| conn.execute_batch("CREATE TABLE pages (b BLOB)"))
            .await
            .expect("create");
        let wal_pages =
            || std::fs::metadata(dir.path().join("t.db-wal")).map_or(0, |m| m.len()) / 4096;
        fill(&writer, 1_500).await;
        assert!(
            wal_pages() > 1_500,
            "SQLite's default checkpoints at 1,000 pages: {}",
            wal_pages()
        );
        fill(&writer, CHECKPOINT_PAGES).await;
        assert!(
            wal_pages() < CHECKPOINT_PAGES as u64 + 100,
            "checkpointed at the window, then written again from its start: {} pages",
            wal_pages()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_alone_in_its_group_is_rolled_back() {
        let (_dir, writer) = table().await;
        let failed = writer
            .write(|conn| {
                conn.execute("INSERT INTO t VALUES (1)", [])?;
                Err::<(), _>(rusqlite::Error::InvalidQuery)
            })
            .await;
        assert!(
            matches!(failed, Err(rusqlite::Error::InvalidQuery)),
            "{failed:?}"
        );
        let panicked = writer
            .write(|conn| -> rusqlite::Result<()> {
                conn.execute("INSERT INTO t VALUES (2)", [])?;
                panic!("a bug in a write")
            })
            .await;
        assert!(panicked.is_err());
        writer
            .write(|conn| conn.execute("INSERT INTO t VALUES (3)", []))
            .await
            .expect("the connection takes writes again");
        assert_eq!(
            rows(&writer).await,
            [3],
            "neither failed write left its row"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_undoes_only_itself_in_its_group() {
        let (_dir, writer) = table().await;
        let insert = |v: i64, fails: bool| {
            Box::pin(writer.write(move |conn| {
                conn.execute("INSERT INTO t VALUES (?1)", [v])?;
                if fails {
                    Err(rusqlite::Error::InvalidQuery)
                } else {
                    Ok(v)
                }
            }))
        };
        let held = lock(&writer.conn);
        let mut writes = [
            insert(1, false),
            insert(2, true),
            insert(3, false),
            insert(4, false),
        ];
        for write in &mut writes {
            queue(write);
        }
        drop(held);
        let mut answers = Vec::new();
        for write in writes {
            answers.push(write.await.ok());
        }
        assert_eq!(answers, [Some(1), None, Some(3), Some(4)]);
        assert_eq!(
            rows(&writer).await,
            [1, 3, 4],
            "the failed write's row is gone, its group's rows are committed"
        );
    }
}
