//! Opening SQLite connections the same way everywhere (WAL, fsync on every commit, a busy timeout) and running
//! them from async code through `spawn_blocking`, so a slow disk never stalls the async workers.

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Opens `path` for durable use: every commit is fsynced before it returns.
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

/// The single writer connection of a database file. Writes wait for their turn without a thread, so that
/// concurrent writes do not each hold a blocking thread parked on the connection's lock.
pub(crate) struct Writer {
    conn: Mutex<Connection>,
    turn: Semaphore,
}

impl Writer {
    /// Opens the writer of `path`.
    pub(crate) fn open(path: &Path) -> rusqlite::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            conn: Mutex::new(open(path)?),
            turn: Semaphore::new(1),
        }))
    }

    /// Runs `work` on the writer connection, once it is free.
    pub(crate) async fn write<T, F>(self: &Arc<Self>, work: F) -> rusqlite::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let _turn = self.turn.acquire().await.map_err(|_| closed())?;
        let writer = self.clone();
        blocking(move || work(&mut lock(&writer.conn))).await
    }
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
