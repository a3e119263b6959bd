//! Which adapter serves each port. The only place that names concrete adapters: distributed adapters are added
//! here (behind their cargo features) without touching core or api code.

use crate::config::{Config, EventLogBackend, ObjectsBackend, StoreBackend};
use crate::telemetry::MeteredLog;
use chat4all_core::events::Topics;
use chat4all_core::ports::{EventLog, ObjectStore, Stores};
use chat4all_embedded::{LocalObjects, LogOptions, SegmentLog, SqliteStore};
use std::sync::Arc;

/// Opens the configured event log.
pub async fn open_event_log(config: &Config) -> anyhow::Result<Arc<dyn EventLog>> {
    let storage = &config.storage;
    match &storage.event_log {
        EventLogBackend::Segments(path) => {
            let options = LogOptions {
                partitions: storage.partitions,
                // Real-time readers follow applied changes live and catch up from history after a restart,
                // so in one process the notifications need not reach the disk.
                live_topics: [Topics::default().notifications].into(),
                commit_delay: storage.commit_delay,
                ..LogOptions::default()
            };
            let log = Arc::new(SegmentLog::open(&storage.path(path), options)?);
            Ok(Arc::new(MeteredLog::new(log, "embedded")))
        }
        #[cfg(feature = "kafka")]
        EventLogBackend::Kafka(url) => {
            if !storage.commit_delay.is_zero() {
                tracing::warn!(
                    "storage.commit-delay-us applies to the embedded event log only; Kafka's producer batches on its own"
                );
            }
            let defaults = chat4all_kafka::KafkaOptions::default();
            let options = chat4all_kafka::KafkaOptions {
                partitions: storage.partitions.unwrap_or(defaults.partitions),
                ..defaults
            };
            let log = Arc::new(chat4all_kafka::KafkaLog::connect(url, options)?);
            Ok(Arc::new(MeteredLog::new(log, "kafka")))
        }
        #[cfg(not(feature = "kafka"))]
        EventLogBackend::Kafka(url) => not_built_in("kafka", url),
    }
}

/// Opens the configured store (every aggregate in one backend for now).
pub async fn open_store(config: &Config) -> anyhow::Result<Stores> {
    let storage = &config.storage;
    match &storage.store {
        // One process owns the file, so every membership change passes through the cache and keeps it exact.
        StoreBackend::Sqlite(path) => Ok(Stores::all_in(Arc::new(SqliteStore::open(
            &storage.path(path),
        )?))
        .with_conversation_cache()),
        #[cfg(feature = "postgres")]
        StoreBackend::Postgres(url) => Ok(Stores::all_in(Arc::new(
            chat4all_postgres::PostgresStore::connect(url).await?,
        ))),
        #[cfg(not(feature = "postgres"))]
        StoreBackend::Postgres(url) => not_built_in("postgres", url),
    }
}

/// Opens the configured object storage.
pub async fn open_objects(config: &Config) -> anyhow::Result<Arc<dyn ObjectStore>> {
    let storage = &config.storage;
    match &storage.objects {
        ObjectsBackend::Directory(path) => Ok(Arc::new(LocalObjects::open(&storage.path(path))?)),
        #[cfg(feature = "s3")]
        ObjectsBackend::S3(url) => {
            let objects = chat4all_s3::S3Objects::open(url)?;
            objects.check().await?;
            Ok(Arc::new(objects))
        }
        #[cfg(not(feature = "s3"))]
        ObjectsBackend::S3(url) => not_built_in("s3", url),
    }
}

/// The configuration refuses a shared backend whose feature this binary lacks; this says so again should one
/// be given another way.
#[cfg(not(all(feature = "kafka", feature = "postgres", feature = "s3")))]
fn not_built_in<T>(feature: &str, url: &str) -> anyhow::Result<T> {
    anyhow::bail!("{url}: this chat4all was built without the `{feature}` feature")
}
