//! Files beside messages: streamed uploads with their SHA-256 and signed downloads here; resumable uploads in
//! `uploads`, link signatures in `links`, safe names and types in `names`.

mod links;
mod names;
mod uploads;

pub use links::LinkSigner;
use names::extension;
pub use names::{safe_filename, safe_mimetype};
pub use uploads::{MAX_CHUNK_BYTES, UPLOAD_SESSION_MS, UploadProgress};

use super::conversations::Conversations;
use crate::error::ServiceError;
use crate::ids::{ConversationId, FileId, IdempotencyKey, UserId};
use crate::model::FileMeta;
use crate::ports::{ByteStream, ObjectError, ObjectKey, ObjectStore, ObjectWriter, Stores};
use crate::time::now_millis;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Lower-case hex of `bytes` (checksums, signatures).
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl From<ObjectError> for ServiceError {
    fn from(e: ObjectError) -> Self {
        match e {
            ObjectError::NotFound => Self::NotFound("the file's content is missing".into()),
            ObjectError::Backend(why) => Self::Unavailable(why),
        }
    }
}

/// A file being received: counts, hashes and writes each chunk, and refuses to grow past the limit.
pub struct IncomingFile {
    writer: Box<dyn ObjectWriter>,
    hasher: Sha256,
    size: u64,
    limit: u64,
}

impl IncomingFile {
    /// Appends a chunk; 413 once the total passes the limit (the partial object is removed then).
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), ServiceError> {
        self.size += chunk.len() as u64;
        if self.size > self.limit {
            return Err(ServiceError::TooLarge(format!(
                "the file is over the {} byte limit",
                self.limit
            )));
        }
        self.hasher.update(&chunk);
        Ok(self.writer.write(chunk).await?)
    }

    /// Discards what was received.
    pub async fn abort(self) {
        self.writer.abort().await;
    }
}

/// What identifies a download: either a member's token or a valid signature.
pub enum DownloadAccess<'a> {
    /// A member of the file's conversation.
    Member(&'a UserId),
    /// A signed link: expiry (seconds since the epoch) and hex signature.
    Signed {
        /// Link expiry.
        expires: i64,
        /// Hex HMAC.
        signature: &'a str,
    },
}

/// A time-limited link to a file's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadLink {
    /// Absolute URL usable without a token.
    pub url: String,
    /// Expiry (ms).
    pub expires_at: i64,
    /// Seconds until expiry.
    pub expires_in: u64,
}

/// The file use cases.
#[derive(Clone)]
pub struct Files {
    stores: Stores,
    objects: Arc<dyn ObjectStore>,
    conversations: Conversations,
    signer: LinkSigner,
    limits: FileLimits,
}

/// Size and time limits of files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimits {
    /// Largest file accepted, in bytes.
    pub max_bytes: u64,
    /// How long a download link stays valid, in seconds.
    pub link_ttl_secs: u64,
}

impl Default for FileLimits {
    fn default() -> Self {
        Self {
            max_bytes: 2 * 1024 * 1024 * 1024,
            link_ttl_secs: 3600,
        }
    }
}

impl Files {
    /// Files in `objects`, metadata in `store`, links signed by `signer`, within `limits`.
    pub fn new(
        stores: &Stores,
        objects: Arc<dyn ObjectStore>,
        signer: LinkSigner,
        limits: FileLimits,
    ) -> Self {
        let conversations = Conversations::new(stores);
        Self {
            stores: stores.clone(),
            objects,
            conversations,
            signer,
            limits,
        }
    }

    /// Starts receiving a file (before its conversation may be known: multipart parts come in any order).
    pub async fn receive(&self) -> Result<IncomingFile, ServiceError> {
        Ok(IncomingFile {
            writer: self.objects.begin().await?,
            hasher: Sha256::new(),
            size: 0,
            limit: self.limits.max_bytes,
        })
    }

    /// Stores a received file for `caller` in `conversation` (created on first use, as a first message would).
    /// With an `Idempotency-Key`, a repeat returns the first file and stores nothing new.
    pub async fn store_received(
        &self,
        caller: &UserId,
        conversation: &str,
        filename: &str,
        mimetype: Option<&str>,
        incoming: IncomingFile,
        idempotency_key: Option<&IdempotencyKey>,
    ) -> Result<FileMeta, ServiceError> {
        let checked = async {
            let conversation_id = ConversationId::parse(conversation)?;
            self.conversations
                .ensure_member(&conversation_id, caller, None)
                .await?;
            Ok::<_, ServiceError>(conversation_id)
        };
        let conversation_id = match checked.await {
            Ok(id) => id,
            Err(e) => {
                incoming.abort().await;
                return Err(e);
            }
        };
        let IncomingFile {
            writer,
            hasher,
            size,
            ..
        } = incoming;
        let mut file = FileMeta {
            file_id: FileId::generate(),
            conversation_id,
            uploader_id: caller.clone(),
            filename: safe_filename(filename),
            size_bytes: size,
            mimetype: safe_mimetype(mimetype),
            checksum: format!("sha256:{}", hex(&hasher.finalize())),
            object_key: String::new(),
            uploaded_at: now_millis(),
        };
        if let Some(key) = idempotency_key {
            let fingerprint = format!(
                "{}\n{}\n{}\n{}",
                file.conversation_id, file.filename, file.size_bytes, file.checksum
            );
            let not_before = file.uploaded_at - super::messaging::IDEMPOTENCY_WINDOW_MS;
            let reserved = self
                .stores
                .idempotency
                .reserve_file_idempotency_key(caller, key, &fingerprint, &file.file_id, not_before)
                .await;
            let (in_force, file_id) = match reserved {
                Ok(reservation) => reservation,
                Err(e) => {
                    writer.abort().await;
                    return Err(e.into());
                }
            };
            if in_force != fingerprint {
                writer.abort().await;
                return Err(ServiceError::Unprocessable(
                    "Idempotency-Key was already used with a different upload".into(),
                ));
            }
            if let Some(first) = self.stores.files.file(&file_id).await? {
                writer.abort().await;
                return Ok(first);
            }
            file.file_id = file_id; // a reservation whose upload did not finish: complete it under its id
        }
        let key = ObjectKey::for_file(
            &file.conversation_id,
            &file.file_id,
            extension(&file.filename),
        );
        file.object_key = key.as_str().to_owned();
        writer.commit(&key).await?;
        self.stores.files.insert_file(&file).await?;
        Ok(file)
    }

    /// The file, if `access` allows it: a bad or expired signature is a 403 whether or not the file exists; a
    /// member's request for a file of a conversation they are not in is a 404, like one for a missing file.
    pub async fn authorize(
        &self,
        file_id: &str,
        access: DownloadAccess<'_>,
    ) -> Result<FileMeta, ServiceError> {
        let not_found = || ServiceError::NotFound(format!("file {file_id} not found"));
        let forged = || ServiceError::Forbidden("the download link is invalid or expired".into());
        let id = match (FileId::parse(file_id), &access) {
            (Ok(id), _) => id,
            (Err(_), DownloadAccess::Signed { .. }) => return Err(forged()),
            (Err(_), DownloadAccess::Member(_)) => return Err(not_found()),
        };
        match access {
            DownloadAccess::Member(user) => {
                let file = self.stores.files.file(&id).await?.ok_or_else(not_found)?;
                self.conversations
                    .visible_to(&file.conversation_id, user)
                    .await?
                    .ok_or_else(not_found)?;
                Ok(file)
            }
            DownloadAccess::Signed { expires, signature } => {
                if !self
                    .signer
                    .verify(&id, expires, signature, now_millis() / 1000)
                {
                    return Err(forged());
                }
                self.stores.files.file(&id).await?.ok_or_else(not_found)
            }
        }
    }

    /// A fresh time-limited link to `file`: the backend's own presigned URL when it has one, else a link signed
    /// by the api under `base_url` (`http://host:port`).
    pub async fn link(
        &self,
        file: &FileMeta,
        base_url: &str,
    ) -> Result<DownloadLink, ServiceError> {
        let key = ObjectKey::from_stored(file.object_key.clone());
        let expires_at_secs = now_millis() / 1000 + self.limits.link_ttl_secs as i64;
        let url = match self
            .objects
            .presigned_get(&key, self.limits.link_ttl_secs)
            .await?
        {
            Some(url) => url,
            None => format!(
                "{base_url}/v1/files/{}/content?expires={expires_at_secs}&signature={}",
                file.file_id,
                self.signer.sign(&file.file_id, expires_at_secs)
            ),
        };
        Ok(DownloadLink {
            url,
            expires_at: expires_at_secs * 1000,
            expires_in: self.limits.link_ttl_secs,
        })
    }

    /// `len` bytes of the file from `start`.
    pub async fn read(
        &self,
        file: &FileMeta,
        start: u64,
        len: u64,
    ) -> Result<ByteStream, ServiceError> {
        Ok(self
            .objects
            .read(&ObjectKey::from_stored(file.object_key.clone()), start, len)
            .await?)
    }
}
