//! Chat4All's PostgreSQL store: every store aggregate of `chat4all_core::ports` on one pooled PostgreSQL
//! database (`tokio-postgres` + `deadpool-postgres`), with versioned migrations applied at connect.
//!
//! The SQL stays within what PostgreSQL-wire distributed engines (CockroachDB, YugabyteDB) accept: natural text
//! keys, no sequences, no advisory locks, no LISTEN/NOTIFY. A message's `seq` comes from its conversation's
//! `last_seq` counter, bumped under the conversation's row lock, so it is gap-free and duplicate-free even when two
//! routers record the same messages at once.
//!
//! # URL
//! `postgres://user:password@host:port/database[?pool_size=N][&other=...]`: `pool_size` (default 16) is this
//! adapter's own key and is removed; every other query key goes to `tokio_postgres::Config` as it is (such as
//! `connect_timeout=5` or `application_name=router`). `postgresql://` works too. Without a `connect_timeout`,
//! connecting gives up after 10 s.

mod accounts;
mod control;
mod conversations;
mod error;
mod files;
mod groups;
mod idempotency;
mod identities;
mod messages;
mod migrate;
mod receipts;
mod rows;

use async_trait::async_trait;
use chat4all_core::ports::{Backend, StoreError};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use error::Error;
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::Row;

pub use migrate::MIGRATIONS;

/// Connections kept by default in the pool.
const DEFAULT_POOL_SIZE: usize = 16;

/// PostgreSQL implementation of the store port: a pool of connections to one database.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    write_duration: metrics::Histogram,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("pool", &self.pool.status())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (see the crate doc for its form) and brings its schema up to date.
    /// `Unavailable` when the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let (config, pool_size) = parse_url(url)?;
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| StoreError::Backend(format!("postgres pool: {e}")))?;
        let store = Self {
            pool,
            write_duration: metrics::histogram!("store_write_duration_seconds", "service" => "chat4all", "backend" => "postgres"),
        };
        {
            let mut client = store.client().await?;
            migrate::migrate(&mut client).await?;
        }
        Ok(store)
    }

    /// A pooled connection.
    async fn client(&self) -> Result<Object, Error> {
        Ok(self.pool.get().await?)
    }

    /// The rows of `sql`, whose `$1` is the array of `keys`, each made by `each`; no round trip for none.
    async fn for_keys<T>(
        &self,
        sql: &str,
        keys: &[impl AsRef<str>],
        each: impl Fn(&Row) -> Result<T, Error>,
    ) -> Result<Vec<T>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
        let client = self.client().await?;
        let rows = client.query(sql, &[&keys]).await.map_err(Error::from)?;
        Ok(rows::all(&rows, each)?)
    }
}

/// Splits the adapter's own query keys off `url`; the rest is a `tokio_postgres::Config`.
fn parse_url(url: &str) -> Result<(tokio_postgres::Config, usize), StoreError> {
    let invalid = |why: String| StoreError::Backend(format!("invalid postgres url: {why}"));
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut pool_size = DEFAULT_POOL_SIZE;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("pool_size", n)) => {
                pool_size =
                    n.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        invalid(format!("pool_size={n} is not a positive number"))
                    })?;
            }
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let mut config = tokio_postgres::Config::from_str(&rest).map_err(|e| invalid(e.to_string()))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    Ok((config, pool_size))
}

#[async_trait]
impl Backend for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(Error::from)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_url;

    #[test]
    fn the_pool_size_is_taken_off_the_url() {
        let (config, size) =
            parse_url("postgres://u:p@127.0.0.1:5433/db?pool_size=4&application_name=x").unwrap();
        assert_eq!(size, 4);
        assert_eq!(config.get_application_name(), Some("x"));
        assert_eq!(config.get_dbname(), Some("db"));
        let (_, size) = parse_url("postgres://u:p@127.0.0.1/db").unwrap();
        assert_eq!(size, super::DEFAULT_POOL_SIZE);
        assert!(parse_url("postgres://u:p@127.0.0.1/db?pool_size=0").is_err());
    }
}
