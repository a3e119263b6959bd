//! Versioned schema migrations, applied in order at connect, each recorded in `schema_migrations`.
//!
//! All pending migrations run in one transaction that first takes `LOCK TABLE schema_migrations IN EXCLUSIVE
//! MODE`, so of several processes starting at once one applies them and the others wait, then find them applied.

use crate::error::Error;
use chat4all_core::ports::StoreError;
use tokio_postgres::error::SqlState;

/// The schema migrations in order: (version, name, SQL).
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "accounts_conversations_messages",
        include_str!("../migrations/0001_accounts_conversations_messages.sql"),
    ),
    (
        2,
        "files_uploads",
        include_str!("../migrations/0002_files_uploads.sql"),
    ),
    (
        3,
        "idempotency_controls",
        include_str!("../migrations/0003_idempotency_controls.sql"),
    ),
    (
        4,
        "groups_receipts",
        include_str!("../migrations/0004_groups_receipts.sql"),
    ),
    (
        5,
        "identities",
        include_str!("../migrations/0005_identities.sql"),
    ),
];

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    BIGINT NOT NULL PRIMARY KEY,
    applied_at BIGINT NOT NULL
)";

/// Brings the schema up to date; returns the versions applied now.
pub(crate) async fn migrate(client: &mut tokio_postgres::Client) -> Result<Vec<i64>, Error> {
    // Two starters creating the table at once can collide on the catalog even with IF NOT EXISTS; the loser
    // finds it created when it tries again.
    for attempt in 0.. {
        match client.batch_execute(CREATE_TABLE).await {
            Ok(()) => break,
            Err(e)
                if attempt < 5
                    && matches!(e.code(), Some(c) if *c == SqlState::UNIQUE_VIOLATION || *c == SqlState::DUPLICATE_TABLE || *c == SqlState::DUPLICATE_OBJECT) =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let tx = client.transaction().await?;
    tx.batch_execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")
        .await?;
    let applied: Vec<i64> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let newest_known = MIGRATIONS.last().map_or(0, |m| m.0);
    if let Some(newer) = applied.iter().find(|v| **v > newest_known) {
        return Err(StoreError::Backend(format!(
            "the store's schema has migration {newer}, newer than this build knows ({newest_known}); upgrade chat4all"
        ))
        .into());
    }
    let mut done = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[version, &chat4all_core::time::now_millis()],
        )
        .await?;
        tracing::info!(version, name, "store migration applied");
        done.push(*version);
    }
    tx.commit().await?;
    Ok(done)
}
