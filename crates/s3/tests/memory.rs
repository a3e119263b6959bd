//! A large object streams through in constant memory, both ways. Alone in its test binary (its own process) so
//! that no other test's allocations move the peak resident set it measures.

mod common;

use bytes::Bytes;
use chat4all_core::ids::{ConversationId, FileId};
use chat4all_core::ports::{ObjectKey, ObjectStore};
use chat4all_s3::S3Objects;
use common::{Server, pattern};
use futures::StreamExt;

/// The peak resident set of this process so far (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[tokio::test]
async fn a_64_mib_object_streams_up_and_down_in_bounded_memory() {
    let Some(server) = Server::get() else { return };
    const SIZE: u64 = 64 * 1024 * 1024;
    const CHUNK: usize = 256 * 1024;
    const BOUND: u64 = 48 * 1024 * 1024;
    let prefix = Server::fresh_prefix("memory");
    let store = S3Objects::open(&server.url_with(&prefix, "")).unwrap();
    let key = ObjectKey::for_file(
        &ConversationId::parse("memory").unwrap(),
        &FileId::generate(),
        Some("bin"),
    );
    // Warm up the client (connection pool, TLS-free HTTP stack) before the baseline.
    put_small(&store).await;
    let before = peak_rss();

    let mut writer = store.begin().await.unwrap();
    let mut offset = 0u64;
    while offset < SIZE {
        // A fresh allocation per chunk, as from a request body: buffering them would show in the peak.
        writer
            .write(Bytes::from(pattern(offset, CHUNK)))
            .await
            .unwrap();
        offset += CHUNK as u64;
    }
    writer.commit(&key).await.unwrap();
    let after_upload = peak_rss();
    assert_eq!(store.size(&key).await.unwrap(), SIZE);

    let mut stream = store.read(&key, 0, SIZE).await.unwrap();
    let mut offset = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        assert!(
            chunk[..] == pattern(offset, chunk.len())[..],
            "bytes at {offset} read back"
        );
        offset += chunk.len() as u64;
    }
    assert_eq!(offset, SIZE);
    let after_read = peak_rss();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    eprintln!(
        "peak RSS: {:.1} MiB before, +{:.1} MiB after a 64 MiB upload, +{:.1} MiB after reading it back",
        mib(before),
        mib(after_upload.saturating_sub(before)),
        mib(after_read.saturating_sub(before))
    );
    assert!(
        after_upload - before < BOUND,
        "uploading 64 MiB grew the peak RSS by {:.1} MiB",
        mib(after_upload - before)
    );
    assert!(
        after_read - before < BOUND,
        "reading 64 MiB back grew the peak RSS by {:.1} MiB",
        mib(after_read - before)
    );
    store.delete(&key).await.unwrap();
    assert!(store.work_in_progress().await.unwrap().is_empty());
}

async fn put_small(store: &S3Objects) {
    let key = ObjectKey::for_file(
        &ConversationId::parse("memory").unwrap(),
        &FileId::generate(),
        Some("bin"),
    );
    let mut writer = store.begin().await.unwrap();
    writer.write(Bytes::from(pattern(0, 1024))).await.unwrap();
    writer.commit(&key).await.unwrap();
    store.delete(&key).await.unwrap();
}
