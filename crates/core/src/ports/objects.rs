//! The object storage port: file bytes beside the messages (a local directory, S3, MinIO).

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

/// A stream of byte chunks.
pub type ByteStream = BoxStream<'static, Result<Bytes, ObjectError>>;

/// Object storage failures.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// No such object or staged upload.
    #[error("object not found")]
    NotFound,
    /// The backend failed (disk, network).
    #[error("object storage: {0}")]
    Backend(String),
}

/// The location of an object, built only from validated parts so that no client string becomes a path:
/// `{conversation_id}/{file_id}{.ext}`, where a segment starting with `.` is prefixed with `_`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// The key of a file. `extension` is kept only when it is 1–10 ASCII letters or digits.
    pub fn for_file(
        conversation: &crate::ids::ConversationId,
        file: &crate::ids::FileId,
        extension: Option<&str>,
    ) -> Self {
        let segment = |s: &str| {
            if s.starts_with('.') {
                format!("_{s}")
            } else {
                s.to_owned()
            }
        };
        let extension = extension
            .filter(|e| (1..=10).contains(&e.len()) && e.bytes().all(|b| b.is_ascii_alphanumeric()))
            .map(|e| format!(".{}", e.to_ascii_lowercase()))
            .unwrap_or_default();
        Self(format!(
            "{}/{}{extension}",
            segment(conversation.as_str()),
            segment(file.as_str())
        ))
    }

    /// A key read back from the store (it was built by [`ObjectKey::for_file`]).
    pub fn from_stored(key: String) -> Self {
        Self(key)
    }

    /// The key as text (`/`-separated).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An object being written. Nothing is visible under any key until [`ObjectWriter::commit`]; a writer dropped or
/// aborted leaves nothing behind.
#[async_trait]
pub trait ObjectWriter: Send {
    /// Appends bytes.
    async fn write(&mut self, chunk: Bytes) -> Result<(), ObjectError>;
    /// Makes the object durable and visible under `key`, replacing any object already there.
    async fn commit(self: Box<Self>, key: &ObjectKey) -> Result<(), ObjectError>;
    /// Discards what was written.
    async fn abort(self: Box<Self>);
}

/// Where an object can be read. What every adapter promises is checked by `contract::objects`.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Starts a new object.
    async fn begin(&self) -> Result<Box<dyn ObjectWriter>, ObjectError>;

    /// The object's size; [`ObjectError::NotFound`] when there is no object under `key`.
    async fn size(&self, key: &ObjectKey) -> Result<u64, ObjectError>;

    /// `len` bytes from `start` of the object, streamed; [`ObjectError::NotFound`] at the call when there is no
    /// object under `key`. A range running past the end is an error (at the call or in the stream, never a short
    /// read), so callers clamp ranges to [`ObjectStore::size`].
    async fn read(&self, key: &ObjectKey, start: u64, len: u64) -> Result<ByteStream, ObjectError>;

    /// Removes an object (no error when it is already gone).
    async fn delete(&self, key: &ObjectKey) -> Result<(), ObjectError>;

    /// A URL the backend itself serves and signs (an S3 presigned GET), or `None` when the api must sign and
    /// serve the download itself (embedded mode). A backend answers `None` for every key or for none.
    async fn presigned_get(
        &self,
        key: &ObjectKey,
        expires_in_secs: u64,
    ) -> Result<Option<String>, ObjectError>;

    /// Writes a chunk of a resumable upload at `offset` of its staging area, creating it on the first chunk.
    /// Chunks may come in any order; one sent again overwrites the same bytes.
    async fn stage_chunk(
        &self,
        upload: &crate::ids::UploadId,
        offset: u64,
        chunk: Bytes,
    ) -> Result<(), ObjectError>;

    /// Streams a resumable upload's staged bytes, in order; [`ObjectError::NotFound`] when nothing is staged.
    async fn read_staged(&self, upload: &crate::ids::UploadId) -> Result<ByteStream, ObjectError>;

    /// Makes a staged upload durable and visible under `key`, as if committed by a writer; the staged upload is
    /// then gone. [`ObjectError::NotFound`] when nothing is staged.
    async fn promote_staged(
        &self,
        upload: &crate::ids::UploadId,
        key: &ObjectKey,
    ) -> Result<(), ObjectError>;

    /// Deletes a staged upload (no error when it is already gone).
    async fn discard_staged(&self, upload: &crate::ids::UploadId) -> Result<(), ObjectError>;
}

#[cfg(test)]
mod tests {
    use super::ObjectKey;
    use crate::ids::{ConversationId, FileId};

    #[test]
    fn keys_never_escape_their_folder() {
        let file = FileId::parse("f1").unwrap();
        let key = |c: &str, ext| {
            ObjectKey::for_file(&ConversationId::parse(c).unwrap(), &file, ext)
                .as_str()
                .to_owned()
        };
        assert_eq!(key("c1", Some("PDF")), "c1/f1.pdf");
        assert_eq!(key("..", Some("txt")), "_../f1.txt");
        assert_eq!(key(".", None), "_./f1");
        assert_eq!(key(".hidden", Some("../../etc")), "_.hidden/f1");
        assert_eq!(key("c1", Some("verylongextension")), "c1/f1");
        assert!(!key("..", None).starts_with(".."));
    }
}
