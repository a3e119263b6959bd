//! The object storage contract: byte-exact objects visible only once committed, ranged reads, idempotent
//! deletes, resumable uploads staged at any offset, presigned links.

use crate::ids::{ConversationId, FileId, UploadId};
use crate::ports::{ByteStream, ObjectError, ObjectKey, ObjectStore};
use bytes::Bytes;
use futures::StreamExt;
use std::sync::Arc;

/// Runs every check against a fresh, empty store. Every writer and staged upload the checks start is committed,
/// aborted, promoted or discarded, so an adapter's test may afterwards assert that nothing was left behind.
pub async fn run_all(objects: Arc<dyn ObjectStore>) {
    let objects = objects.as_ref();
    committed_objects_read_back_exactly(objects).await;
    ranged_reads(objects).await;
    commit_replaces_an_existing_object(objects).await;
    aborted_writers_leave_nothing(objects).await;
    missing_objects_are_not_found(objects).await;
    delete_is_idempotent(objects).await;
    staged_uploads_assemble_out_of_order(objects).await;
    discarded_uploads_are_gone(objects).await;
    presigned_links_differ_per_key(objects).await;
}

fn fresh_key() -> ObjectKey {
    let conversation = ConversationId::parse("contract").expect("valid conversation id");
    ObjectKey::for_file(&conversation, &FileId::generate(), Some("bin"))
}

/// `len` bytes that differ from their neighbours, so a misplaced chunk shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ seed.wrapping_mul(37))
        .collect()
}

async fn collect(stream: ByteStream) -> Result<Vec<u8>, ObjectError> {
    let mut bytes = Vec::new();
    let mut stream = stream;
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk?);
    }
    Ok(bytes)
}

async fn read_all(objects: &dyn ObjectStore, key: &ObjectKey) -> Vec<u8> {
    let size = objects.size(key).await.expect("size of a committed object");
    let stream = objects.read(key, 0, size).await.expect("read");
    collect(stream).await.expect("read stream")
}

async fn put(objects: &dyn ObjectStore, key: &ObjectKey, chunks: &[&[u8]]) {
    let mut writer = objects.begin().await.expect("begin");
    for chunk in chunks {
        writer
            .write(Bytes::copy_from_slice(chunk))
            .await
            .expect("write");
    }
    writer.commit(key).await.expect("commit");
}

fn is_not_found<T>(result: &Result<T, ObjectError>) -> bool {
    matches!(result, Err(ObjectError::NotFound))
}

/// A committed object reads back byte for byte, whatever its chunking and size (empty, several chunks,
/// several MiB), and `size` reports its length.
pub async fn committed_objects_read_back_exactly(objects: &dyn ObjectStore) {
    let chunked = fresh_key();
    put(objects, &chunked, &[b"hello ", b"", b"chunked ", b"world"]).await;
    assert_eq!(
        read_all(objects, &chunked).await,
        b"hello chunked world",
        "chunks are concatenated in write order"
    );

    let empty = fresh_key();
    put(objects, &empty, &[]).await;
    assert_eq!(
        objects.size(&empty).await.expect("size"),
        0,
        "an empty object exists with size 0"
    );
    assert!(read_all(objects, &empty).await.is_empty());

    let large = pattern(3 * 1024 * 1024 + 123, 1);
    let key = fresh_key();
    let chunks: Vec<&[u8]> = large.chunks(100_003).collect();
    put(objects, &key, &chunks).await;
    assert_eq!(
        objects.size(&key).await.expect("size"),
        large.len() as u64,
        "size is the committed length"
    );
    assert!(
        read_all(objects, &key).await == large,
        "a multi-MiB object reads back byte-exact"
    );
}

/// `read(start, len)` returns exactly that range, including one ending at the last byte and empty ones; a range
/// running past the end is an error.
pub async fn ranged_reads(objects: &dyn ObjectStore) {
    let content = pattern(2 * 1024 * 1024 + 77, 2);
    let key = fresh_key();
    put(objects, &key, &[&content]).await;
    let size = content.len() as u64;
    let key = &key;
    let range =
        |start: u64, len: u64| async move { collect(objects.read(key, start, len).await?).await };
    for (start, len) in [(0, 10), (1024 * 1024 - 5, 10), (size - 7, 7), (1, size - 1)] {
        let read = range(start, len).await.expect("ranged read");
        assert!(
            read == content[start as usize..(start + len) as usize],
            "read({start}, {len}) returns exactly that range"
        );
    }
    for start in [0, 100, size] {
        assert!(
            range(start, 0).await.expect("zero-length read").is_empty(),
            "a zero-length read at {start} returns no bytes"
        );
    }
    assert!(
        range(size - 3, 10).await.is_err(),
        "a range running past the end is an error, never a silently short read"
    );
}

/// Committing under a key that already holds an object replaces it whole.
pub async fn commit_replaces_an_existing_object(objects: &dyn ObjectStore) {
    let key = fresh_key();
    put(objects, &key, &[b"a longer first version"]).await;
    put(objects, &key, &[b"second"]).await;
    assert_eq!(
        read_all(objects, &key).await,
        b"second",
        "the last commit wins, with nothing left of the previous object"
    );
}

/// Bytes written before an abort are visible nowhere: not under a key that already exists, not in another
/// writer's object.
pub async fn aborted_writers_leave_nothing(objects: &dyn ObjectStore) {
    let key = fresh_key();
    put(objects, &key, &[b"kept"]).await;
    let mut aborted = objects.begin().await.expect("begin");
    aborted
        .write(Bytes::from_static(b"discarded"))
        .await
        .expect("write");
    let mut other = objects.begin().await.expect("begin");
    other
        .write(Bytes::from_static(b"other"))
        .await
        .expect("write");
    aborted.abort().await;
    assert_eq!(
        read_all(objects, &key).await,
        b"kept",
        "an uncommitted writer never touches existing objects"
    );
    let other_key = fresh_key();
    other.commit(&other_key).await.expect("commit");
    assert_eq!(
        read_all(objects, &other_key).await,
        b"other",
        "concurrent writers do not share bytes"
    );
}

/// `size` and `read` of a key never committed answer [`ObjectError::NotFound`] at the call.
pub async fn missing_objects_are_not_found(objects: &dyn ObjectStore) {
    let key = fresh_key();
    assert!(
        is_not_found(&objects.size(&key).await),
        "size of a missing object is NotFound"
    );
    assert!(
        is_not_found(&objects.read(&key, 0, 1).await),
        "read of a missing object is NotFound"
    );
}

/// `delete` removes an object and succeeds again once it is gone.
pub async fn delete_is_idempotent(objects: &dyn ObjectStore) {
    let key = fresh_key();
    put(objects, &key, &[b"to delete"]).await;
    objects.delete(&key).await.expect("delete");
    assert!(
        is_not_found(&objects.size(&key).await),
        "a deleted object is gone"
    );
    objects
        .delete(&key)
        .await
        .expect("deleting a deleted object succeeds");
    objects
        .delete(&fresh_key())
        .await
        .expect("deleting a never-written object succeeds");
}

/// Chunks staged at their offsets, in any order and sent again, assemble into the upload's bytes; two uploads
/// never mix; promoting makes an ordinary object and consumes the staged upload.
pub async fn staged_uploads_assemble_out_of_order(objects: &dyn ObjectStore) {
    let content = pattern(300_000, 3);
    let other_content = pattern(1000, 4);
    let (upload, other) = (UploadId::generate(), UploadId::generate());
    let chunks: Vec<(u64, &[u8])> = content
        .chunks(100_000)
        .enumerate()
        .map(|(i, chunk)| (i as u64 * 100_000, chunk))
        .collect();
    for (offset, chunk) in [chunks[2], chunks[0], chunks[1], chunks[0]] {
        objects
            .stage_chunk(&upload, offset, Bytes::copy_from_slice(chunk))
            .await
            .expect("stage chunk");
        objects
            .stage_chunk(&other, 0, Bytes::copy_from_slice(&other_content))
            .await
            .expect("stage chunk");
    }
    let staged = collect(objects.read_staged(&upload).await.expect("read staged"))
        .await
        .expect("read staged stream");
    assert!(
        staged == content,
        "staged chunks assemble at their offsets, whatever their order"
    );

    let key = fresh_key();
    objects
        .promote_staged(&upload, &key)
        .await
        .expect("promote");
    assert!(
        read_all(objects, &key).await == content,
        "a promoted upload is an ordinary object"
    );
    assert!(
        is_not_found(&objects.read_staged(&upload).await),
        "promoting consumes the staged upload"
    );
    assert!(
        is_not_found(&objects.promote_staged(&upload, &fresh_key()).await),
        "an upload cannot be promoted twice"
    );
    let other_staged = collect(objects.read_staged(&other).await.expect("read staged"))
        .await
        .expect("read staged stream");
    assert_eq!(other_staged, other_content, "uploads never mix");
    objects.discard_staged(&other).await.expect("discard");
}

/// A discarded upload is gone; discarding again succeeds; an upload never staged is NotFound.
pub async fn discarded_uploads_are_gone(objects: &dyn ObjectStore) {
    let upload = UploadId::generate();
    objects
        .stage_chunk(&upload, 0, Bytes::from_static(b"abandoned"))
        .await
        .expect("stage chunk");
    objects.discard_staged(&upload).await.expect("discard");
    assert!(
        is_not_found(&objects.read_staged(&upload).await),
        "a discarded upload cannot be read"
    );
    assert!(
        is_not_found(&objects.promote_staged(&upload, &fresh_key()).await),
        "a discarded upload cannot be promoted"
    );
    objects
        .discard_staged(&upload)
        .await
        .expect("discarding a discarded upload succeeds");
    assert!(
        is_not_found(&objects.read_staged(&UploadId::generate()).await),
        "an upload never staged is NotFound"
    );
}

/// A backend presigns every key or none; a presigned URL is non-empty and names its own object.
pub async fn presigned_links_differ_per_key(objects: &dyn ObjectStore) {
    let (first, second) = (fresh_key(), fresh_key());
    put(objects, &first, &[b"1"]).await;
    put(objects, &second, &[b"2"]).await;
    let link =
        |key: ObjectKey| async move { objects.presigned_get(&key, 60).await.expect("presign") };
    match (link(first).await, link(second).await) {
        (None, None) => {}
        (Some(a), Some(b)) => {
            assert!(!a.is_empty(), "a presigned URL is not empty");
            assert_ne!(a, b, "each object has its own presigned URL");
        }
        (a, b) => panic!("a backend presigns every key or none, got {a:?} and {b:?}"),
    }
}
