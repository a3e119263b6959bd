//! File metadata and resumable upload sessions; the bytes live in object storage.

use super::{Backend, StoreError};
use crate::ids::{FileId, UploadId};
use crate::model::{FileMeta, UploadSession};
use async_trait::async_trait;

/// File metadata and resumable upload sessions (the bytes live in object storage).
#[async_trait]
pub trait FileStore: Backend {
    /// Adds a file's metadata.
    async fn insert_file(&self, file: &FileMeta) -> Result<(), StoreError>;

    /// A file's metadata.
    async fn file(&self, id: &FileId) -> Result<Option<FileMeta>, StoreError>;

    /// Adds a resumable upload session.
    async fn insert_upload(&self, upload: &UploadSession) -> Result<(), StoreError>;

    /// A resumable upload session.
    async fn upload(&self, id: &UploadId) -> Result<Option<UploadSession>, StoreError>;

    /// Records that bytes `start..end` of an upload arrived; returns every range present, merged and sorted.
    async fn add_upload_range(
        &self,
        id: &UploadId,
        start: u64,
        end: u64,
    ) -> Result<Vec<(u64, u64)>, StoreError>;

    /// The byte ranges of an upload that arrived, merged and sorted.
    async fn upload_ranges(&self, id: &UploadId) -> Result<Vec<(u64, u64)>, StoreError>;

    /// Forgets an upload session.
    async fn delete_upload(&self, id: &UploadId) -> Result<(), StoreError>;

    /// Upload sessions that expired before `now` (ms).
    async fn expired_uploads(&self, now: i64) -> Result<Vec<UploadId>, StoreError>;
}
