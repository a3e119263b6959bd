//! The object storage contract on a real S3 server (SeaweedFS from `scripts/servers/seaweedfs.sh`), and what
//! only S3 promises: presigned links checked by the server, ranged GETs across parts, aborted multipart uploads.
//! Each test works under its own key prefix, so they run in parallel.

mod common;

use bytes::Bytes;
use chat4all_core::contract;
use chat4all_core::ids::{ConversationId, FileId};
use chat4all_core::ports::{ObjectError, ObjectKey, ObjectStore};
use chat4all_s3::{PART_SIZE, S3Objects};
use common::{Server, pattern};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;

fn key(conversation: &str) -> ObjectKey {
    ObjectKey::for_file(
        &ConversationId::parse(conversation).unwrap(),
        &FileId::generate(),
        Some("bin"),
    )
}

async fn put(store: &S3Objects, key: &ObjectKey, bytes: &[u8], chunk: usize) {
    let mut writer = store.begin().await.unwrap();
    for piece in bytes.chunks(chunk.max(1)) {
        writer.write(Bytes::copy_from_slice(piece)).await.unwrap();
    }
    writer.commit(key).await.unwrap();
}

async fn read(
    store: &S3Objects,
    key: &ObjectKey,
    start: u64,
    len: u64,
) -> Result<Vec<u8>, ObjectError> {
    let mut stream = store.read(key, start, len).await?;
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk?);
    }
    Ok(bytes)
}

#[tokio::test]
async fn s3_objects_meet_the_object_storage_contract_and_leave_no_work_behind() {
    let Some(server) = Server::get() else { return };
    let prefix = Server::fresh_prefix("contract");
    let store = S3Objects::open(&server.url_with(&prefix, "")).unwrap();
    contract::objects::run_all(Arc::new(store.clone())).await;
    assert_eq!(
        store.work_in_progress().await.unwrap(),
        Vec::<String>::new(),
        "every writer and staged upload of the suite ended, so no staging object or chunk may be left"
    );
    assert_eq!(
        server.pending_multipart_uploads(&prefix).await,
        Vec::<String>::new(),
        "no multipart upload may be left pending"
    );
}

#[tokio::test]
async fn presigned_links_are_served_by_s3_and_refused_when_tampered_with_or_expired() {
    let Some(server) = Server::get() else { return };
    let prefix = Server::fresh_prefix("presign");
    let store = S3Objects::open(&server.url_with(&prefix, "")).unwrap();
    let key = key("presign");
    let content = pattern(0, 100_000);
    put(&store, &key, &content, 30_000).await;
    let http = reqwest::Client::new();

    let url = store
        .presigned_get(&key, 60)
        .await
        .unwrap()
        .expect("S3 presigns");
    assert!(
        url.starts_with(&format!("{}/{}/{prefix}/", server.endpoint, server.bucket)),
        "a path-style link on the endpoint: {url}"
    );
    assert!(
        url.contains("X-Amz-Expires=60"),
        "the link carries its expiry: {url}"
    );
    let response = http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.bytes().await.unwrap() == content,
        "the link serves the object's bytes"
    );

    let (unsigned, _) = url.split_once('?').unwrap();
    assert_eq!(
        http.get(unsigned).send().await.unwrap().status(),
        403,
        "the object is not public: without the signature S3 refuses"
    );
    let at = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let mut forged = url.clone().into_bytes();
    forged[at] = if forged[at] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).unwrap();
    assert_eq!(
        http.get(&forged).send().await.unwrap().status(),
        403,
        "a link with one signature character changed is refused"
    );

    let short = store.presigned_get(&key, 1).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        http.get(&short).send().await.unwrap().status(),
        403,
        "an expired link is refused"
    );

    // A public endpoint (here the same server under another host name) is the host of the links, and the
    // signature is made for it.
    let port = server.endpoint.rsplit_once(':').unwrap().1;
    let public = format!("http://localhost:{port}");
    let behind_proxy =
        S3Objects::open(&server.url_with(&prefix, &format!("&public_endpoint={public}"))).unwrap();
    let url = behind_proxy.presigned_get(&key, 60).await.unwrap().unwrap();
    assert!(
        url.starts_with(&format!("{public}/")),
        "signed for the public host: {url}"
    );
    let response = http.get(&url).send().await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "the public link is valid for its host"
    );
    assert!(response.bytes().await.unwrap() == content);
    store.delete(&key).await.unwrap();
}

#[tokio::test]
async fn ranged_reads_return_exactly_the_bytes_asked_across_parts() {
    let Some(server) = Server::get() else { return };
    let prefix = Server::fresh_prefix("range");
    let store = S3Objects::open(&server.url_with(&prefix, "")).unwrap();
    let key = key("range");
    // Three parts (two full and a short one), so reads cross part boundaries.
    let size = 2 * PART_SIZE + 12_345;
    let content = pattern(0, size);
    put(&store, &key, &content, 256 * 1024).await;
    assert_eq!(store.size(&key).await.unwrap(), size as u64);
    let part = PART_SIZE as u64;
    for (start, len) in [
        (0, 1),
        (part - 3, 6),
        (part - 100_000, part + 100_000),
        (size as u64 - 1, 1),
        (7, size as u64 - 7),
    ] {
        let got = read(&store, &key, start, len).await.unwrap();
        assert!(
            got == content[start as usize..(start + len) as usize],
            "read({start}, {len}) returns exactly those bytes"
        );
    }
    assert!(
        read(&store, &key, size as u64 - 5, 6).await.is_err(),
        "past the end: an error"
    );
    assert!(
        read(&store, &key, size as u64 + 10, 1).await.is_err(),
        "after the end: an error"
    );
    assert!(
        read(&store, &key, size as u64 + 1, 0).await.is_err(),
        "an empty range after the end: an error"
    );
    store.delete(&key).await.unwrap();
    assert!(store.work_in_progress().await.unwrap().is_empty());
}

#[tokio::test]
async fn aborted_and_dropped_writers_leave_no_object_and_no_pending_multipart_upload() {
    let Some(server) = Server::get() else { return };
    let prefix = Server::fresh_prefix("abort");
    let store = S3Objects::open(&server.url_with(&prefix, "")).unwrap();
    let big = Bytes::from(pattern(0, PART_SIZE + 1000));

    let mut aborted = store.begin().await.unwrap();
    aborted.write(big.clone()).await.unwrap();
    let mut dropped = store.begin().await.unwrap();
    dropped.write(big.clone()).await.unwrap();
    assert_eq!(
        server.pending_multipart_uploads(&prefix).await.len(),
        2,
        "past one part, each writer streams by a multipart upload (so the checks below mean something)"
    );

    aborted.abort().await;
    drop(dropped);
    let mut pending = server.pending_multipart_uploads(&prefix).await;
    for _ in 0..50 {
        if pending.is_empty() {
            break;
        }
        // The dropped writer's abort runs on a spawned task.
        tokio::time::sleep(Duration::from_millis(100)).await;
        pending = server.pending_multipart_uploads(&prefix).await;
    }
    assert_eq!(
        pending,
        Vec::<String>::new(),
        "no multipart upload is left pending"
    );
    assert_eq!(
        store.work_in_progress().await.unwrap(),
        Vec::<String>::new(),
        "no staging object is left"
    );

    // An abort after the writer was committed under a key never touches it, and a failed commit leaves nothing.
    let key = key("abort");
    put(&store, &key, b"kept", 10).await;
    let mut writer = store.begin().await.unwrap();
    writer.write(big).await.unwrap();
    writer.abort().await;
    assert_eq!(read(&store, &key, 0, 4).await.unwrap(), b"kept");
    store.delete(&key).await.unwrap();
    assert!(server.pending_multipart_uploads(&prefix).await.is_empty());
}

#[tokio::test]
async fn large_resumable_uploads_assemble_and_promote_by_multipart() {
    let Some(server) = Server::get() else { return };
    let prefix = Server::fresh_prefix("resumable");
    let store = S3Objects::open(&server.url_with(&prefix, "")).unwrap();
    let upload = chat4all_core::ids::UploadId::generate();
    // 11 MiB + 1 in chunks of 1 MiB sent in reverse order, one sent again with other bounds: promoting
    // streams them into a multipart upload of three parts.
    let size = 11 * 1024 * 1024 + 1;
    let content = pattern(0, size);
    let chunk = 1024 * 1024;
    let mut offsets: Vec<usize> = (0..size).step_by(chunk).collect();
    offsets.reverse();
    for offset in offsets {
        let end = (offset + chunk).min(size);
        store
            .stage_chunk(
                &upload,
                offset as u64,
                Bytes::copy_from_slice(&content[offset..end]),
            )
            .await
            .unwrap();
    }
    store
        .stage_chunk(
            &upload,
            500_000,
            Bytes::copy_from_slice(&content[500_000..1_500_000]),
        )
        .await
        .unwrap();
    let key = key("resumable");
    store.promote_staged(&upload, &key).await.unwrap();
    assert_eq!(store.size(&key).await.unwrap(), size as u64);
    assert!(read(&store, &key, 0, size as u64).await.unwrap() == content);
    assert!(
        store.work_in_progress().await.unwrap().is_empty(),
        "the chunks are gone"
    );
    assert!(server.pending_multipart_uploads(&prefix).await.is_empty());
    store.delete(&key).await.unwrap();
}

#[tokio::test]
async fn the_check_passes_with_the_right_credentials_only() {
    let Some(server) = Server::get() else { return };
    let prefix = Server::fresh_prefix("check");
    S3Objects::open(&server.url_with(&prefix, ""))
        .unwrap()
        .check()
        .await
        .expect("the test server accepts its credentials");
    let access = std::env::var("AWS_ACCESS_KEY_ID").unwrap();
    let wrong = S3Objects::open(&server.url_with(
        &prefix,
        &format!("&access_key_id={access}&secret_access_key=not-the-secret"),
    ))
    .unwrap();
    assert!(
        wrong.check().await.is_err(),
        "a wrong secret is refused by the server"
    );
    let missing = S3Objects::open(&server.url_with(&prefix, "").replacen(
        &server.bucket,
        "chat4all-no-such-bucket",
        1,
    ))
    .unwrap();
    assert!(
        missing.check().await.is_err(),
        "a missing bucket fails the check"
    );
}

#[tokio::test]
async fn bad_urls_are_refused_with_a_reason_and_good_ones_open_offline() {
    // Opening checks the URL and builds the clients (TLS on ring included) without reaching the server.
    for url in [
        "s3://chat4all-files",
        "s3://chat4all-files/tenant-a?endpoint=https://s3.example.com&region=eu-west-1",
        "s3://chat4all-files?endpoint=http://10.0.0.5:8333&public_endpoint=https://files.example.com",
    ] {
        S3Objects::open(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    }
    for (url, reason) in [
        ("s3://b?endpoint=http://127.0.0.1:1", "bucket"),
        ("s3://bucket?endpoint=ftp://x", "http"),
        ("s3://bucket?nope=1", "unknown parameter"),
    ] {
        match S3Objects::open(url) {
            Err(ObjectError::Backend(message)) => {
                assert!(message.contains(reason), "{url}: {message}")
            }
            Err(e) => panic!("{url}: {e}"),
            Ok(_) => panic!("{url} is refused"),
        }
    }
}
