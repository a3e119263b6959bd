//! Files end to end: streamed uploads, their checksums and byte-identical downloads with ranges, limits and
//! cut uploads, bounded multipart parts, hostile names, and attachments on messages.

mod common;

use common::{
    TestApp, bytes, fetch, sha256, spawn_app, spawn_with, staging_is_empty, test_config, upload,
    visible_objects,
};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

#[tokio::test]
async fn uploads_keep_their_checksum_and_download_identically() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (_, alice) = app.user("alice").await;
    for (len, file_first) in [(1024, true), (10 * 1024 * 1024, false)] {
        let data = bytes(len, len as u64);
        let response = upload(&app, &alice, "c1", "report.pdf", &data, file_first).await;
        assert_eq!(response.status(), 201);
        let file: Value = response.json().await.unwrap();
        assert_eq!(file["checksum"], format!("sha256:{}", sha256(&data)));
        assert_eq!(file["size_bytes"], len);
        assert_eq!(file["filename"], "report.pdf");
        assert_eq!(file["conversation_id"], "c1");
        let id = file["file_id"].as_str().unwrap();

        let link = app
            .get(&format!("/v1/files/{id}/download"), &alice)
            .await
            .json();
        assert_eq!(link["expires_in"], 3600);
        let plain = reqwest::Client::new();
        let (status, headers, body) =
            fetch(&plain, link["download_url"].as_str().unwrap(), None, None).await;
        assert_eq!(status, 200, "the signed link works without a token");
        assert!(body == data, "signed download differs");
        assert_eq!(headers["content-length"], len.to_string().as_str());
        assert_eq!(headers["accept-ranges"], "bytes");
        assert!(
            headers["content-disposition"]
                .to_str()
                .unwrap()
                .contains("filename=\"report.pdf\"")
        );

        let (status, _, body) = fetch(
            &plain,
            &app.url(&format!("/v1/files/{id}/content")),
            Some(&alice),
            None,
        )
        .await;
        assert_eq!(status, 200);
        assert!(body == data, "bearer download differs");
        let (status, headers, slice) = fetch(
            &plain,
            &app.url(&format!("/v1/files/{id}/content")),
            Some(&alice),
            Some("bytes=100-199"),
        )
        .await;
        assert_eq!(status, 206);
        assert_eq!(slice, data[100..200]);
        assert_eq!(
            headers["content-range"],
            format!("bytes 100-199/{len}").as_str()
        );
        let (status, _, tail) = fetch(
            &plain,
            &app.url(&format!("/v1/files/{id}/content")),
            Some(&alice),
            Some("bytes=-10"),
        )
        .await;
        assert_eq!((status, tail.as_slice()), (206, &data[len - 10..]));
        let (status, headers, _) = fetch(
            &plain,
            &app.url(&format!("/v1/files/{id}/content")),
            Some(&alice),
            Some(&format!("bytes={len}-")),
        )
        .await;
        assert_eq!(status, 416);
        assert_eq!(headers["content-range"], format!("bytes */{len}").as_str());
    }
    app.stop().await;
}

#[tokio::test]
async fn oversize_and_cut_uploads_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.files.max_bytes = 1024 * 1024;
    let app = spawn_with(config).await;
    let (_, alice) = app.user("alice").await;

    let response = upload(
        &app,
        &alice,
        "c1",
        "big.bin",
        &bytes(2 * 1024 * 1024, 1),
        false,
    )
    .await;
    assert_eq!(response.status(), 413);
    assert!(visible_objects(dir.path()).is_empty());
    assert!(
        staging_is_empty(dir.path()),
        "the partial object is removed"
    );

    // A body that stops half-way, as a dropped connection does.
    let boundary = "cut-boundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"conversation_id\"\r\n\r\nc1\r\n--{boundary}\r\n\
         Content-Disposition: form-data; name=\"file\"; filename=\"cut.bin\"\r\n\r\n"
    );
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = vec![
        Ok(bytes::Bytes::from(head)),
        Ok(bytes::Bytes::from(vec![7u8; 200_000])),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "cut",
        )),
    ];
    let cut = app
        .client
        .post(app.url("/v1/files"))
        .bearer_auth(&alice)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    assert!(cut.is_err() || cut.unwrap().status() == 400);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !staging_is_empty(dir.path()) {
        assert!(
            Instant::now() < deadline,
            "the cut upload's staging file was never removed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        visible_objects(dir.path()).is_empty(),
        "a cut upload is never visible"
    );
    assert_eq!(
        upload(&app, &alice, "c1", "ok.bin", b"fine", true)
            .await
            .status(),
        201,
        "the server carries on"
    );
    app.stop().await;
}

/// Posts a hand-made multipart body (boundary `b`), streamed in `chunks`.
async fn post_multipart(app: &TestApp, token: &str, chunks: Vec<Vec<u8>>) -> common::Reply {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = chunks.into_iter().map(Ok).collect();
    let response = app
        .client
        .post(app.url("/v1/files"))
        .bearer_auth(token)
        .header("content-type", "multipart/form-data; boundary=b")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    common::Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        text: response.text().await.unwrap(),
    }
}

#[tokio::test]
async fn multipart_parts_other_than_the_file_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (_, alice) = app.user("alice").await;
    let part = |name: &str| {
        format!("--b\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n").into_bytes()
    };
    let file = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nhello\r\n".to_vec();

    // A 16 MiB conversation_id, streamed in 64 KiB pieces: refused once past 1 KiB, never buffered whole.
    let mut chunks = vec![file.clone(), part("conversation_id")];
    chunks.extend((0..256).map(|_| vec![b'c'; 64 * 1024]));
    chunks.push(b"\r\n--b--\r\n".to_vec());
    let huge = post_multipart(&app, &alice, chunks).await;
    assert_eq!(huge.status, 413, "{}", huge.text);
    assert!(huge.text.contains("conversation_id"), "{}", huge.text);

    // A part header that never ends is cut at the framing budget.
    let mut chunks =
        vec![b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"".to_vec()];
    chunks.extend((0..256).map(|_| vec![b'x'; 64 * 1024]));
    let endless = post_multipart(&app, &alice, chunks).await;
    assert_eq!(endless.status, 413, "{}", endless.text);

    // Unknown and repeated parts are refused by name.
    let mut unknown = part("avatar");
    unknown.extend(b"x\r\n");
    let mut conversation = part("conversation_id");
    conversation.extend(b"c1\r\n");
    for (chunks, expected) in [
        (vec![unknown, file.clone(), conversation.clone()], "avatar"),
        (
            vec![conversation.clone(), conversation.clone(), file.clone()],
            "more than one",
        ),
    ] {
        let mut chunks = chunks;
        chunks.push(b"--b--\r\n".to_vec());
        let refused = post_multipart(&app, &alice, chunks).await;
        assert_eq!(refused.status, 400, "{}", refused.text);
        assert!(refused.text.contains(expected), "{}", refused.text);
    }

    let fine = post_multipart(
        &app,
        &alice,
        vec![file, conversation, b"--b--\r\n".to_vec()],
    )
    .await;
    assert_eq!(fine.status, 201, "{}", fine.text);
    assert!(
        visible_objects(dir.path()).len() == 1,
        "only the good upload is stored"
    );
    app.stop().await;
}

#[tokio::test]
async fn hostile_names_stay_inside_the_object_folder() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (_, alice) = app.user("alice").await;
    let response = upload(&app, &alice, "..", "../../../escape.sh", b"#!/bin/sh", true).await;
    assert_eq!(response.status(), 201);
    let file: Value = response.json().await.unwrap();
    assert_eq!(file["filename"], "escape.sh");
    let objects = visible_objects(dir.path());
    assert_eq!(objects.len(), 1);
    let root = dir.path().join("objects").canonicalize().unwrap();
    assert!(
        Path::new(&objects[0])
            .canonicalize()
            .unwrap()
            .starts_with(&root),
        "{objects:?}"
    );
    assert!(
        !dir.path().join("escape.sh").exists()
            && !dir.path().parent().unwrap().join("escape.sh").exists()
    );
    let (status, headers, _) = fetch(
        &app.client,
        &app.url(&format!(
            "/v1/files/{}/content",
            file["file_id"].as_str().unwrap()
        )),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-content-type-options"], "nosniff");
    app.stop().await;
}

#[tokio::test]
async fn messages_carry_their_attachment() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (_, alice) = app.user("alice").await;
    let key = reqwest::header::HeaderValue::from_static("upload-key-1");
    let form = || {
        Form::new().text("conversation_id", "c1").part(
            "file",
            Part::bytes(b"%PDF-1.7".to_vec()).file_name("doc.pdf"),
        )
    };
    let first: Value = app
        .client
        .post(app.url("/v1/files"))
        .bearer_auth(&alice)
        .header("idempotency-key", key.clone())
        .multipart(form())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let second: Value = app
        .client
        .post(app.url("/v1/files"))
        .bearer_auth(&alice)
        .header("idempotency-key", key)
        .multipart(form())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        first["file_id"], second["file_id"],
        "Idempotency-Key replays the first upload"
    );
    assert_eq!(
        first["mimetype"], "application/pdf",
        "guessed from the name when the part has no type"
    );
    assert_eq!(visible_objects(dir.path()).len(), 1);

    let id = first["file_id"].as_str().unwrap();
    assert_eq!(
        app.send(
            &alice,
            json!({"conversation_id": "c1", "content": "see attached", "file_id": id})
        )
        .await
        .status,
        202
    );
    assert_eq!(
        app.send(
            &alice,
            json!({"conversation_id": "other", "content": "wrong room", "file_id": id})
        )
        .await
        .status,
        400
    );
    let messages = app
        .wait_for_history(&alice, "c1", |m| {
            m.len() == 1 && m[0]["status"] == "DELIVERED"
        })
        .await;
    assert_eq!(messages[0]["file_id"], id);
    assert_eq!(messages[0]["file_metadata"]["filename"], "doc.pdf");
    assert_eq!(messages[0]["file_metadata"]["size_bytes"], 8);
    assert_eq!(messages[0]["file_metadata"]["checksum"], first["checksum"]);
    let (status, _, body) = fetch(
        &reqwest::Client::new(),
        messages[0]["file_download_url"].as_str().unwrap(),
        None,
        None,
    )
    .await;
    assert_eq!((status, body.as_slice()), (200, b"%PDF-1.7".as_slice()));
    app.stop().await;
}
