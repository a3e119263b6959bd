//! Resumable uploads: a session per file, chunks in any order (repeats harmless), then completion with the
//! checksum verified.

use super::names::{extension, safe_filename, safe_mimetype};
use super::{Files, hex};
use crate::error::ServiceError;
use crate::ids::{ConversationId, FileId, UploadId, UserId};
use crate::model::{FileMeta, UploadSession};
use crate::ports::ObjectKey;
use crate::time::now_millis;
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};

/// How long a resumable upload session lives.
pub const UPLOAD_SESSION_MS: i64 = 24 * 60 * 60 * 1000;
/// Largest chunk of a resumable upload.
pub const MAX_CHUNK_BYTES: u64 = 64 * 1024 * 1024;

/// A resumable upload's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadProgress {
    /// The session.
    pub session: UploadSession,
    /// Byte ranges received, merged and sorted (`start..end`).
    pub ranges: Vec<(u64, u64)>,
}

impl UploadProgress {
    /// Whether every byte arrived.
    pub fn is_complete(&self) -> bool {
        self.session.size_bytes == 0 || self.ranges == [(0, self.session.size_bytes)]
    }
}

impl Files {
    /// Opens a resumable upload of `size_bytes` into `conversation`.
    pub async fn create_upload(
        &self,
        caller: &UserId,
        conversation: &str,
        filename: &str,
        mimetype: Option<&str>,
        size_bytes: u64,
        checksum: Option<&str>,
    ) -> Result<UploadSession, ServiceError> {
        let conversation_id = ConversationId::parse(conversation)?;
        if size_bytes > self.limits.max_bytes {
            return Err(ServiceError::TooLarge(format!(
                "the file is over the {} byte limit",
                self.limits.max_bytes
            )));
        }
        let checksum = checksum.map(str::to_ascii_lowercase);
        if let Some(c) = &checksum
            && !c
                .strip_prefix("sha256:")
                .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(ServiceError::Invalid(
                "checksum must be sha256:<64 hex digits>".into(),
            ));
        }
        self.conversations
            .ensure_member(&conversation_id, caller, None)
            .await?;
        let created_at = now_millis();
        let session = UploadSession {
            upload_id: UploadId::generate(),
            conversation_id,
            uploader_id: caller.clone(),
            filename: safe_filename(filename),
            mimetype: safe_mimetype(mimetype),
            size_bytes,
            checksum,
            created_at,
            expires_at: created_at + UPLOAD_SESSION_MS,
        };
        self.stores.files.insert_upload(&session).await?;
        Ok(session)
    }

    /// The caller's live upload session (404 for anyone else, or once expired).
    async fn session(&self, caller: &UserId, upload: &str) -> Result<UploadSession, ServiceError> {
        let not_found = || ServiceError::NotFound(format!("upload {upload} not found"));
        let id = UploadId::parse(upload).map_err(|_| not_found())?;
        match self.stores.files.upload(&id).await? {
            Some(session)
                if &session.uploader_id == caller && session.expires_at > now_millis() =>
            {
                Ok(session)
            }
            _ => Err(not_found()),
        }
    }

    /// Stores a chunk at `offset`; chunks may come in any order and be sent again.
    pub async fn put_chunk(
        &self,
        caller: &UserId,
        upload: &str,
        offset: u64,
        chunk: Bytes,
    ) -> Result<UploadProgress, ServiceError> {
        let session = self.session(caller, upload).await?;
        let end = offset
            .checked_add(chunk.len() as u64)
            .filter(|end| *end <= session.size_bytes)
            .ok_or_else(|| {
                ServiceError::Invalid(format!(
                    "the chunk ends past the announced size of {} bytes",
                    session.size_bytes
                ))
            })?;
        if chunk.is_empty() {
            return Err(ServiceError::Invalid("an empty chunk adds nothing".into()));
        }
        self.objects
            .stage_chunk(&session.upload_id, offset, chunk)
            .await?;
        let ranges = self
            .stores
            .files
            .add_upload_range(&session.upload_id, offset, end)
            .await?;
        Ok(UploadProgress { session, ranges })
    }

    /// The ranges received so far.
    pub async fn progress(
        &self,
        caller: &UserId,
        upload: &str,
    ) -> Result<UploadProgress, ServiceError> {
        let session = self.session(caller, upload).await?;
        let ranges = self.stores.files.upload_ranges(&session.upload_id).await?;
        Ok(UploadProgress { session, ranges })
    }

    /// Turns a complete upload into a file: 409 while bytes are missing, 422 when the checksum does not match.
    pub async fn complete_upload(
        &self,
        caller: &UserId,
        upload: &str,
    ) -> Result<FileMeta, ServiceError> {
        let progress = self.progress(caller, upload).await?;
        if !progress.is_complete() {
            return Err(ServiceError::Conflict(
                "the upload is missing bytes; GET it to see which ranges arrived".into(),
            ));
        }
        let session = progress.session;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        if session.size_bytes > 0 {
            let mut staged = self.objects.read_staged(&session.upload_id).await?;
            while let Some(chunk) = staged.next().await {
                let chunk = chunk?;
                size += chunk.len() as u64;
                hasher.update(&chunk);
            }
        }
        let checksum = format!("sha256:{}", hex(&hasher.finalize()));
        if size != session.size_bytes
            || session
                .checksum
                .as_ref()
                .is_some_and(|expected| *expected != checksum)
        {
            return Err(ServiceError::Unprocessable(format!(
                "the uploaded bytes do not match: got {size} bytes with {checksum}"
            )));
        }
        let file_id = FileId::generate();
        let key = ObjectKey::for_file(
            &session.conversation_id,
            &file_id,
            extension(&session.filename),
        );
        if session.size_bytes == 0 {
            self.objects.begin().await?.commit(&key).await?;
        } else {
            self.objects
                .promote_staged(&session.upload_id, &key)
                .await?;
        }
        let file = FileMeta {
            file_id,
            conversation_id: session.conversation_id,
            uploader_id: session.uploader_id,
            filename: session.filename,
            size_bytes: size,
            mimetype: session.mimetype,
            checksum,
            object_key: key.as_str().to_owned(),
            uploaded_at: now_millis(),
        };
        self.stores.files.insert_file(&file).await?;
        self.stores.files.delete_upload(&session.upload_id).await?;
        Ok(file)
    }

    /// Deletes expired upload sessions and their staged bytes; returns how many.
    pub async fn purge_expired_uploads(&self) -> Result<usize, ServiceError> {
        let expired = self.stores.files.expired_uploads(now_millis()).await?;
        for upload in &expired {
            self.objects.discard_staged(upload).await?;
            self.stores.files.delete_upload(upload).await?;
        }
        Ok(expired.len())
    }
}
