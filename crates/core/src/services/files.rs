//! Files beside messages: streamed uploads with their SHA-256, signed downloads, resumable uploads.

use super::conversations::Conversations;
use crate::error::ServiceError;
use crate::ids::{ConversationId, FileId, IdempotencyKey, UploadId, UserId};
use crate::model::{FileMeta, UploadSession};
use crate::ports::{ByteStream, ObjectError, ObjectKey, ObjectStore, ObjectWriter, Store};
use crate::time::now_millis;
use bytes::Bytes;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// How long a resumable upload session lives.
pub const UPLOAD_SESSION_MS: i64 = 24 * 60 * 60 * 1000;
/// Largest chunk of a resumable upload.
pub const MAX_CHUNK_BYTES: u64 = 64 * 1024 * 1024;

impl From<ObjectError> for ServiceError {
    fn from(e: ObjectError) -> Self {
        match e {
            ObjectError::NotFound => Self::NotFound("the file's content is missing".into()),
            ObjectError::Backend(why) => Self::Unavailable(why),
        }
    }
}

/// Signs download links (HMAC-SHA256 over file id and expiry) and checks them in constant time.
#[derive(Clone)]
pub struct LinkSigner {
    key: Vec<u8>,
}

impl LinkSigner {
    /// A signer with its own key derived from `secret` (so a download signature is never a valid token part).
    pub fn new(secret: &[u8]) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(b"chat4all download links v1");
        Self {
            key: mac.finalize().into_bytes().to_vec(),
        }
    }

    fn mac(&self, file: &FileId, expires: i64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(file.as_str().as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// The hex signature of a link to `file` valid until `expires` (seconds since the epoch).
    pub fn sign(&self, file: &FileId, expires: i64) -> String {
        hex(&self.mac(file, expires).finalize().into_bytes())
    }

    /// Whether `signature` is valid for `file` until `expires`, and `expires` is not past.
    pub fn verify(&self, file: &FileId, expires: i64, signature: &str, now_secs: i64) -> bool {
        let Some(bytes) = unhex(signature) else {
            return false;
        };
        expires >= now_secs && self.mac(file, expires).verify_slice(&bytes).is_ok()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 128 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A file name safe to store and to put in a header: the last path component, without control characters or
/// quotes, at most 255 bytes; `file` when nothing is left.
pub fn safe_filename(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '\\'))
        .collect();
    let trimmed = cleaned.trim().trim_start_matches('.');
    let mut name = String::with_capacity(trimmed.len().min(255));
    for c in trimmed.chars() {
        if name.len() + c.len_utf8() > 255 {
            break;
        }
        name.push(c);
    }
    if name.is_empty() { "file".into() } else { name }
}

/// A media type as `type/subtype` of token characters (parameters dropped), or `application/octet-stream`.
pub fn safe_mimetype(raw: Option<&str>) -> String {
    let essence = raw
        .and_then(|r| r.split(';').next())
        .map(str::trim)
        .unwrap_or_default();
    let token = |s: &str| {
        !s.is_empty()
            && s.len() <= 100
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match essence.split_once('/') {
        Some((kind, sub)) if token(kind) && token(sub) => essence.to_ascii_lowercase(),
        _ => "application/octet-stream".into(),
    }
}

/// The extension of a safe file name, for the object key.
fn extension(filename: &str) -> Option<&str> {
    filename.rsplit_once('.').map(|(_, ext)| ext)
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

/// The file use cases.
#[derive(Clone)]
pub struct Files {
    store: Arc<dyn Store>,
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
        store: Arc<dyn Store>,
        objects: Arc<dyn ObjectStore>,
        signer: LinkSigner,
        limits: FileLimits,
    ) -> Self {
        let conversations = Conversations::new(store.clone());
        Self {
            store,
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
                .store
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
            if let Some(first) = self.store.file(&file_id).await? {
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
        self.store.insert_file(&file).await?;
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
                let file = self.store.file(&id).await?.ok_or_else(not_found)?;
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
                self.store.file(&id).await?.ok_or_else(not_found)
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
        self.store.insert_upload(&session).await?;
        Ok(session)
    }

    /// The caller's live upload session (404 for anyone else, or once expired).
    async fn session(&self, caller: &UserId, upload: &str) -> Result<UploadSession, ServiceError> {
        let not_found = || ServiceError::NotFound(format!("upload {upload} not found"));
        let id = UploadId::parse(upload).map_err(|_| not_found())?;
        match self.store.upload(&id).await? {
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
            .store
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
        let ranges = self.store.upload_ranges(&session.upload_id).await?;
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
        self.store.insert_file(&file).await?;
        self.store.delete_upload(&session.upload_id).await?;
        Ok(file)
    }

    /// Deletes expired upload sessions and their staged bytes; returns how many.
    pub async fn purge_expired_uploads(&self) -> Result<usize, ServiceError> {
        let expired = self.store.expired_uploads(now_millis()).await?;
        for upload in &expired {
            self.objects.discard_staged(upload).await?;
            self.store.delete_upload(upload).await?;
        }
        Ok(expired.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_file_and_expiry() {
        let signer = LinkSigner::new(b"secret");
        let file = FileId::parse("f1").unwrap();
        let sig = signer.sign(&file, 2_000);
        assert!(signer.verify(&file, 2_000, &sig, 1_000));
        assert!(!signer.verify(&file, 2_000, &sig, 2_001), "expired");
        assert!(!signer.verify(&file, 2_001, &sig, 1_000), "expiry changed");
        assert!(
            !signer.verify(&FileId::parse("f2").unwrap(), 2_000, &sig, 1_000),
            "other file"
        );
        assert!(!signer.verify(&file, 2_000, "zz", 1_000));
        assert!(
            !LinkSigner::new(b"other").verify(&file, 2_000, &sig, 1_000),
            "other key"
        );
    }

    #[test]
    fn file_names_and_types_are_made_safe() {
        assert_eq!(safe_filename("../../etc/passwd"), "passwd");
        assert_eq!(safe_filename("C:\\Users\\x\\report.pdf"), "report.pdf");
        assert_eq!(safe_filename("a\"b\r\nc.txt"), "abc.txt");
        assert_eq!(safe_filename(".."), "file");
        assert_eq!(safe_filename(""), "file");
        assert_eq!(safe_filename(&"é".repeat(300)).len(), 254);
        assert_eq!(safe_mimetype(Some("image/PNG; charset=x")), "image/png");
        assert_eq!(
            safe_mimetype(Some("text/html\r\nX-Evil: 1")),
            "application/octet-stream"
        );
        assert_eq!(safe_mimetype(None), "application/octet-stream");
    }
}
