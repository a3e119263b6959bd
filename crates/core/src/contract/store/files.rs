//! File metadata, attachments and resumable upload ranges.

use super::{accepted, conversation, record};
use crate::ids::{ConversationId, FileId, IdempotencyKey, UploadId, UserId};
use crate::model::{FileMeta, UploadSession};
use crate::ports::Stores;

fn file(conversation: &str, uploader: &UserId) -> FileMeta {
    FileMeta {
        file_id: FileId::generate(),
        conversation_id: ConversationId::parse(conversation).unwrap(),
        uploader_id: uploader.clone(),
        filename: "report.pdf".into(),
        size_bytes: 1234,
        mimetype: "application/pdf".into(),
        checksum: format!("sha256:{}", "ab".repeat(32)),
        object_key: format!("{conversation}/report.pdf"),
        uploaded_at: 5,
    }
}

pub(super) async fn files_and_attachments(stores: &Stores) {
    let sender = UserId::generate();
    stores
        .conversations
        .insert_conversation(&conversation("files-1", &[&sender]))
        .await
        .expect("insert");
    let report = file("files-1", &sender);
    stores
        .files
        .insert_file(&report)
        .await
        .expect("insert file");
    assert_eq!(
        stores.files.file(&report.file_id).await.expect("file"),
        Some(report.clone())
    );
    assert_eq!(
        stores.files.file(&FileId::generate()).await.expect("file"),
        None
    );

    let mut with_file = accepted("files-1", &sender, "see attached");
    with_file.file_id = Some(report.file_id.clone());
    let stored = record(stores, std::slice::from_ref(&with_file))
        .await
        .remove(0);
    assert_eq!(
        stored.attachment.as_ref(),
        Some(&report),
        "a recorded message carries its attachment"
    );
    let read_back = stores
        .messages
        .message(&with_file.message_id)
        .await
        .expect("message")
        .expect("found");
    assert_eq!(read_back.attachment, Some(report.clone()));

    let key = IdempotencyKey::parse("upload-1").unwrap();
    let first = stores
        .idempotency
        .reserve_file_idempotency_key(&sender, &key, "fp-1", &report.file_id, 0)
        .await
        .unwrap();
    assert_eq!(first, ("fp-1".to_owned(), report.file_id.clone()));
    let again = stores
        .idempotency
        .reserve_file_idempotency_key(&sender, &key, "fp-2", &FileId::generate(), 0)
        .await
        .unwrap();
    assert_eq!(again, first, "a live file key keeps its first file");
}

pub(super) async fn resumable_upload_ranges(stores: &Stores) {
    let session = UploadSession {
        upload_id: UploadId::generate(),
        conversation_id: ConversationId::parse("uploads-1").unwrap(),
        uploader_id: UserId::generate(),
        filename: "big.bin".into(),
        mimetype: "application/octet-stream".into(),
        size_bytes: 100,
        checksum: None,
        created_at: 1,
        expires_at: 10,
    };
    stores
        .files
        .insert_upload(&session)
        .await
        .expect("insert upload");
    assert_eq!(
        stores
            .files
            .upload(&session.upload_id)
            .await
            .expect("upload"),
        Some(session.clone())
    );
    let id = &session.upload_id;
    assert_eq!(
        stores.files.add_upload_range(id, 50, 100).await.unwrap(),
        [(50, 100)]
    );
    assert_eq!(
        stores.files.add_upload_range(id, 0, 20).await.unwrap(),
        [(0, 20), (50, 100)],
        "out of order"
    );
    assert_eq!(
        stores.files.add_upload_range(id, 10, 20).await.unwrap(),
        [(0, 20), (50, 100)],
        "sent again"
    );
    assert_eq!(
        stores.files.add_upload_range(id, 20, 50).await.unwrap(),
        [(0, 100)],
        "ranges merge"
    );
    assert_eq!(stores.files.upload_ranges(id).await.unwrap(), [(0, 100)]);
    assert_eq!(
        stores.files.expired_uploads(10).await.unwrap(),
        vec![id.clone()]
    );
    assert!(stores.files.expired_uploads(9).await.unwrap().is_empty());
    stores.files.delete_upload(id).await.unwrap();
    assert_eq!(stores.files.upload(id).await.unwrap(), None);
    assert!(stores.files.upload_ranges(id).await.unwrap().is_empty());
}
