//! Resumable uploads end to end: chunks in any order, progress, private sessions, completion with the checksum
//! verified.

mod common;

use common::{bytes, fetch, sha256, spawn_app};
use serde_json::json;

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
