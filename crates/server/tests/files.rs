//! Files end to end: streamed uploads, checksums, signed downloads, ranges, limits, resumable uploads.

mod common;

use common::{TestApp, spawn_app, spawn_with, test_config};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::{Duration, Instant};

fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn upload(
    app: &TestApp,
    token: &str,
    conversation: &str,
    name: &str,
    data: &[u8],
    file_first: bool,
) -> reqwest::Response {
    let file = Part::bytes(data.to_vec())
        .file_name(name.to_owned())
        .mime_str("application/octet-stream")
        .unwrap();
    let form = if file_first {
        Form::new()
            .part("file", file)
            .text("conversation_id", conversation.to_owned())
    } else {
        Form::new()
            .text("conversation_id", conversation.to_owned())
            .part("file", file)
    };
    app.client
        .post(app.url("/v1/files"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

async fn fetch(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    range: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(range) = range {
        request = request.header("range", range);
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.headers().clone(),
        response.bytes().await.unwrap().to_vec(),
    )
}

/// Visible objects: every file under `objects/` outside the staging folders.
fn visible_objects(data_dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == ".staging" || name == ".uploads" {
                continue;
            }
            if path.is_dir() {
                walk(&path, out)
            } else {
                out.push(path.display().to_string())
            }
        }
    }
    let mut out = Vec::new();
    walk(&data_dir.join("objects"), &mut out);
    out
}

fn staging_is_empty(data_dir: &Path) -> bool {
    std::fs::read_dir(data_dir.join("objects/.staging"))
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}

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
async fn only_members_and_valid_signatures_get_files() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (_, alice) = app.user("alice").await;
    let (_, bob) = app.user("bob").await;
    let file: Value = upload(&app, &alice, "c1", "a.txt", b"secret", true)
        .await
        .json()
        .await
        .unwrap();
    let id = file["file_id"].as_str().unwrap();

    assert_eq!(
        upload(&app, &bob, "c1", "b.txt", b"intrusion", true)
            .await
            .status(),
        403
    );
    // A file of someone else's conversation answers exactly like a missing one.
    let hidden = app.get(&format!("/v1/files/{id}/download"), &bob).await;
    let missing = app.get("/v1/files/no-such-file/download", &bob).await;
    assert_eq!(hidden.status, 404);
    assert_eq!(
        hidden.json()["detail"].as_str().unwrap().replace(id, "X"),
        missing.json()["detail"]
            .as_str()
            .unwrap()
            .replace("no-such-file", "X")
    );
    let content = app.url(&format!("/v1/files/{id}/content"));
    assert_eq!(fetch(&app.client, &content, Some(&bob), None).await.0, 404);
    assert_eq!(fetch(&app.client, &content, None, None).await.0, 401);
    assert_eq!(
        app.get("/v1/files/no-such-file/download", &alice)
            .await
            .status,
        404
    );
    assert_eq!(
        fetch(
            &app.client,
            &app.url("/v1/files/no-such-file/content"),
            Some(&alice),
            None
        )
        .await
        .0,
        404
    );

    let url = file["download_url"].as_str().unwrap();
    let (base, query) = url.split_once("?expires=").unwrap();
    let (expires, signature) = query.split_once("&signature=").unwrap();
    let past = expires.parse::<i64>().unwrap() - 7200;
    let mut tampered = signature.to_owned();
    tampered.replace_range(0..1, if signature.starts_with('0') { "1" } else { "0" });
    for bad in [
        format!("{base}?expires={past}&signature={signature}"),
        format!("{base}?expires={expires}&signature={tampered}"),
        format!("{base}?expires={past}&signature={}", "00".repeat(32)),
        format!("{base}?expires={expires}"),
        // A forged link to a file that does not exist is refused the same way: links reveal no file ids.
        format!(
            "{}?expires={expires}&signature={signature}",
            app.url("/v1/files/no-such-file/content")
        ),
    ] {
        assert_eq!(
            fetch(&reqwest::Client::new(), &bad, None, None).await.0,
            403,
            "{bad}"
        );
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
async fn download_links_never_come_from_the_host_header() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (_, alice) = app.user("alice").await;
    let file = Part::bytes(b"hi".to_vec()).file_name("a.txt");
    let uploaded: Value = app
        .client
        .post(app.url("/v1/files"))
        .bearer_auth(&alice)
        .header("host", "attacker.example")
        .multipart(Form::new().part("file", file).text("conversation_id", "c1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let own = format!("http://{}/", app.addr);
    assert!(
        uploaded["download_url"].as_str().unwrap().starts_with(&own),
        "{uploaded}"
    );
    let id = uploaded["file_id"].as_str().unwrap();
    let link = app
        .request(
            reqwest::Method::GET,
            &format!("/v1/files/{id}/download"),
            Some(&alice),
            None,
            &[("host", "attacker.example")],
        )
        .await
        .json();
    assert!(
        link["download_url"].as_str().unwrap().starts_with(&own),
        "{link}"
    );
    app.stop().await;

    let mut config = test_config(dir.path());
    config.http.public_url = Some("https://chat.example.com".into());
    let app = spawn_with(config).await;
    let link = app
        .get(&format!("/v1/files/{id}/download"), &alice)
        .await
        .json();
    assert!(
        link["download_url"]
            .as_str()
            .unwrap()
            .starts_with("https://chat.example.com/v1/files/"),
        "{link}"
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
async fn resumable_uploads_accept_chunks_in_any_order() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (_, alice) = app.user("alice").await;
    let (_, bob) = app.user("bob").await;
    let data = bytes(3 * 1024 * 1024 + 17, 9);
    let checksum = format!("sha256:{}", sha256(&data));
    let created = app
        .post("/v1/uploads", Some(&alice), &json!({"conversation_id": "c1", "filename": "video.mp4", "size_bytes": data.len(), "checksum": checksum}))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json()["upload_id"].as_str().unwrap().to_owned();
    let chunk = 1024 * 1024;
    let put = |offset: usize| {
        let end = (offset + chunk).min(data.len());
        app.client
            .put(app.url(&format!("/v1/uploads/{id}?offset={offset}")))
            .bearer_auth(&alice)
            .body(data[offset..end].to_vec())
            .send()
    };
    for offset in [2 * chunk, 3 * chunk, 0] {
        assert_eq!(put(offset).await.unwrap().status(), 200);
    }
    let progress = app.get(&format!("/v1/uploads/{id}"), &alice).await.json();
    assert_eq!(
        progress["ranges"],
        json!([[0, chunk], [2 * chunk, data.len()]])
    );
    assert_eq!(progress["complete"], false);
    assert_eq!(
        app.post(
            &format!("/v1/uploads/{id}/complete"),
            Some(&alice),
            &json!({})
        )
        .await
        .status,
        409
    );
    assert_eq!(
        app.get(&format!("/v1/uploads/{id}"), &bob).await.status,
        404,
        "sessions are private"
    );
    let past_end = app
        .client
        .put(app.url(&format!("/v1/uploads/{id}?offset={}", data.len())))
        .bearer_auth(&alice)
        .body(vec![1u8])
        .send()
        .await
        .unwrap();
    assert_eq!(past_end.status(), 400);

    assert_eq!(put(chunk).await.unwrap().status(), 200);
    assert_eq!(
        put(0).await.unwrap().status(),
        200,
        "a chunk sent again is harmless"
    );
    let done = app
        .post(
            &format!("/v1/uploads/{id}/complete"),
            Some(&alice),
            &json!({}),
        )
        .await;
    assert_eq!(done.status, 201, "{}", done.text);
    let file = done.json();
    assert_eq!(file["checksum"], checksum.as_str());
    let (_, _, body) = fetch(
        &app.client,
        file["download_url"].as_str().unwrap(),
        None,
        None,
    )
    .await;
    assert!(body == data);
    assert_eq!(
        app.get(&format!("/v1/uploads/{id}"), &alice).await.status,
        404,
        "a completed session is gone"
    );

    let wrong = app
        .post("/v1/uploads", Some(&alice), &json!({"conversation_id": "c1", "filename": "x", "size_bytes": 3, "checksum": format!("sha256:{}", "0".repeat(64))}))
        .await
        .json();
    let wrong_id = wrong["upload_id"].as_str().unwrap();
    app.client
        .put(app.url(&format!("/v1/uploads/{wrong_id}?offset=0")))
        .bearer_auth(&alice)
        .body(b"abc".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        app.post(
            &format!("/v1/uploads/{wrong_id}/complete"),
            Some(&alice),
            &json!({})
        )
        .await
        .status,
        422,
        "checksum mismatch"
    );
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

#[tokio::test]
async fn download_links_expire() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.files.download_link_ttl_secs = 1;
    let app = spawn_with(config).await;
    let (_, alice) = app.user("alice").await;
    let file: Value = upload(&app, &alice, "c1", "a.txt", b"short-lived", true)
        .await
        .json()
        .await
        .unwrap();
    let url = file["download_url"].as_str().unwrap();
    let plain = reqwest::Client::new();
    assert_eq!(
        fetch(&plain, url, None, None).await.0,
        200,
        "valid right after upload"
    );
    // Time must pass for a link to expire: poll until the server refuses it, within a deadline.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = fetch(&plain, url, None, None).await.0;
        if status == 403 {
            break;
        }
        assert_eq!(status, 200);
        assert!(Instant::now() < deadline, "the link never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}
