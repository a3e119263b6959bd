//! Downloads end to end: only members and valid, unexpired signatures get a file's bytes, and download links
//! never come from the Host header.

mod common;

use common::{fetch, spawn_app, spawn_with, test_config, upload};
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use std::time::{Duration, Instant};

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
