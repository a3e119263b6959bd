//! Chat4All object storage on S3 (AWS S3, MinIO, SeaweedFS), through `object_store`'s `AmazonS3`.
//!
//! # URL
//! ```text
//! s3://BUCKET[/PREFIX]?endpoint=http://127.0.0.1:8333&region=us-east-1&public_endpoint=https://files.example.com
//! ```
//! - `BUCKET` (required): the bucket, which must exist.
//! - `PREFIX` (optional): a key prefix under which everything of this store lives (one bucket, many tenants or
//!   test runs).
//! - `endpoint`: the S3 endpoint for a non-AWS server (MinIO, SeaweedFS), addressed path-style
//!   (`endpoint/bucket/key`); absent: AWS itself, virtual-hosted style.
//! - `region`: defaults to `AWS_REGION` / `AWS_DEFAULT_REGION`, else `us-east-1`.
//! - `public_endpoint`: the endpoint as the clients see it (another host or port than the api reaches, a
//!   proxy); presigned links are signed for that host. Defaults to `endpoint`.
//! - `access_key_id`, `secret_access_key` (for local setups only: a URL is easily logged): else the standard
//!   `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`, web identity, instance metadata)
//!   chain of `object_store`.
//!
//! Plain `http` endpoints are allowed (loopback and private networks); `https` uses rustls on `ring` (not
//! `aws-lc-rs`, which `object_store`'s `aws` feature would pull in) with the platform's certificate store.
//!
//! # Layout in the bucket
//! - `PREFIX/{conversation}/{file}.{ext}`: committed objects ([`ObjectKey`]s never start with `.`).
//! - `PREFIX/.staging/{uuid}`: writers larger than one part, streamed there by a multipart upload and copied to
//!   their key at commit.
//! - `PREFIX/.uploads/{upload_id}/{offset:020}`: the chunks of resumable uploads, one object per chunk.
//!
//! A process killed mid-upload leaves an incomplete multipart upload or a `.staging/` object behind, never a
//! visible half object: give the bucket a lifecycle rule that aborts incomplete multipart uploads and expires
//! `.staging/` and `.uploads/` after a day or two.

use async_trait::async_trait;
use bytes::Bytes;
use chat4all_core::ids::UploadId;
use chat4all_core::ports::{ByteStream, ObjectError, ObjectKey, ObjectStore, ObjectWriter};
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    GetOptions, GetRange, ObjectStore as _, ObjectStoreExt as _, PutPayload, PutPayloadMut,
    WriteMultipart,
};
use std::sync::Arc;
use std::time::Duration;

/// Size of every multipart part but the last (S3's minimum is 5 MiB). A writer buffers at most one part, and
/// holds at most [`PARTS_IN_FLIGHT`] more while they upload.
pub const PART_SIZE: usize = 5 * 1024 * 1024;
/// Parts of one writer uploading at once.
pub const PARTS_IN_FLIGHT: usize = 2;
/// The longest validity of a SigV4 presigned URL (7 days).
pub const MAX_PRESIGN_SECS: u64 = 7 * 24 * 3600;

/// Objects in an S3 bucket.
#[derive(Clone)]
pub struct S3Objects {
    inner: Arc<Inner>,
}

struct Inner {
    store: AmazonS3,
    /// Signs links for the public endpoint (the same client when there is none).
    public: Option<AmazonS3>,
    prefix: Option<Path>,
}

/// The parts of an `s3://` URL.
#[derive(Debug, Default, PartialEq, Eq)]
struct Settings {
    bucket: String,
    prefix: Option<String>,
    endpoint: Option<String>,
    public_endpoint: Option<String>,
    region: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
}

fn invalid(message: impl std::fmt::Display) -> ObjectError {
    ObjectError::Backend(format!("invalid S3 URL: {message}"))
}

/// Decodes `%XX` escapes and `+` of a query value.
fn decode(value: &str) -> Result<String, ObjectError> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = value
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| invalid(format!("bad %-escape in {value:?}")))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| invalid("a query value is not UTF-8"))
}

fn check_endpoint(name: &str, endpoint: &str) -> Result<(), ObjectError> {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .ok_or_else(|| invalid(format!("{name} must start with http:// or https://")))?;
    if rest.is_empty() || rest.contains(['?', '#', '@']) {
        return Err(invalid(format!(
            "{name} must be scheme://host[:port], got {endpoint:?}"
        )));
    }
    Ok(())
}

impl Settings {
    fn parse(url: &str) -> Result<Self, ObjectError> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| invalid("it must start with s3://"))?;
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(invalid(format!(
                "the bucket {bucket:?} must be 3-63 lowercase letters, digits, '-' or '.'"
            )));
        }
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty()
            && prefix
                .split('/')
                .any(|s| s.is_empty() || s.starts_with('.'))
        {
            return Err(invalid(format!(
                "the prefix {prefix:?} has an empty segment or one starting with '.'"
            )));
        }
        let mut settings = Settings {
            bucket: bucket.to_owned(),
            prefix: (!prefix.is_empty()).then(|| prefix.to_owned()),
            ..Settings::default()
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| invalid(format!("{pair:?} is not name=value")))?;
            let value = decode(value)?;
            if value.is_empty() {
                return Err(invalid(format!("{name} is empty")));
            }
            let slot = match name {
                "endpoint" => &mut settings.endpoint,
                "public_endpoint" => &mut settings.public_endpoint,
                "region" => &mut settings.region,
                "access_key_id" => &mut settings.access_key_id,
                "secret_access_key" => &mut settings.secret_access_key,
                other => {
                    return Err(invalid(format!(
                        "unknown parameter {other:?} (known: endpoint, public_endpoint, region, \
                         access_key_id, secret_access_key)"
                    )));
                }
            };
            if slot.replace(value).is_some() {
                return Err(invalid(format!("{name} is given twice")));
            }
        }
        for (name, endpoint) in [
            ("endpoint", &mut settings.endpoint),
            ("public_endpoint", &mut settings.public_endpoint),
        ] {
            if let Some(endpoint) = endpoint {
                check_endpoint(name, endpoint)?;
                *endpoint = endpoint.trim_end_matches('/').to_owned();
            }
        }
        if settings.access_key_id.is_some() != settings.secret_access_key.is_some() {
            return Err(invalid("access_key_id and secret_access_key go together"));
        }
        if settings.endpoint.is_none() && settings.public_endpoint.is_some() {
            return Err(invalid("public_endpoint needs an endpoint"));
        }
        Ok(settings)
    }

    fn client(&self, endpoint: Option<&str>) -> Result<AmazonS3, ObjectError> {
        // from_env: credentials, session token and region from the standard AWS variables.
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&self.bucket)
            .with_allow_http(true);
        let region = self
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".to_owned());
        builder = builder.with_region(region);
        if let Some(endpoint) = endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        if let (Some(id), Some(secret)) = (&self.access_key_id, &self.secret_access_key) {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        builder
            .build()
            .map_err(|e| ObjectError::Backend(format!("S3 client: {e}")))
    }
}

impl S3Objects {
    /// Objects in the bucket named by `url` (see the crate doc for its format). Checks the URL and builds the
    /// clients; the bucket itself is first reached by the first operation.
    pub fn open(url: &str) -> Result<Self, ObjectError> {
        let settings = Settings::parse(url)?;
        // The HTTP client's TLS runs on ring; fails harmlessly when a provider is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let store = settings.client(settings.endpoint.as_deref())?;
        let public = match &settings.public_endpoint {
            Some(public) if Some(public) != settings.endpoint.as_ref() => {
                Some(settings.client(Some(public))?)
            }
            _ => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                public,
                prefix: settings.prefix.as_deref().map(Path::from),
            }),
        })
    }
}

impl S3Objects {
    /// Checks that the bucket exists, answers and accepts this store's credentials (a listing under a prefix
    /// that holds nothing; a HEAD could not tell a missing bucket from a missing key): for a readiness probe or
    /// a start-up check.
    pub async fn check(&self) -> Result<(), ObjectError> {
        let nothing = self.inner.path(".check");
        match self.inner.store.list_with_delimiter(Some(&nothing)).await {
            Ok(_) => Ok(()),
            Err(e) => Err(ObjectError::Backend(format!("S3 check: {e}"))),
        }
    }

    /// The work in progress under this store's prefix: `.staging/` objects of writers and the chunks of
    /// resumable uploads not yet promoted or discarded (paths relative to the bucket). Empty once every writer
    /// and upload has ended; what a crashed process left shows here.
    pub async fn work_in_progress(&self) -> Result<Vec<String>, ObjectError> {
        let mut found = Vec::new();
        for area in [".staging", ".uploads"] {
            let prefix = self.inner.path(area);
            let mut listed: Vec<String> = self
                .inner
                .store
                .list(Some(&prefix))
                .map_ok(|meta| meta.location.to_string())
                .map_err(backend)
                .try_collect()
                .await?;
            found.append(&mut listed);
        }
        Ok(found)
    }
}

impl Inner {
    /// The path of `relative` (`/`-separated, each part a valid segment) under the prefix.
    fn path(&self, relative: &str) -> Path {
        let parts = relative.split('/').map(object_store::path::PathPart::from);
        let mut path = self.prefix.clone().unwrap_or(Path::ROOT);
        path.extend(parts);
        path
    }

    /// The path of an object, refusing keys that are not made of plain segments (defence in depth: keys are
    /// built from validated parts) or that could reach the work areas.
    fn object(&self, key: &ObjectKey) -> Result<Path, ObjectError> {
        let key = key.as_str();
        let plain = key.split('/').all(|s| !s.is_empty() && !s.starts_with('.'));
        if !plain || key.contains('\0') {
            return Err(ObjectError::Backend(format!("refusing object key {key:?}")));
        }
        Ok(self.path(key))
    }

    fn staging(&self) -> Path {
        self.path(&format!(".staging/{}", uuid::Uuid::new_v4().simple()))
    }

    fn upload_dir(&self, upload: &UploadId) -> Path {
        self.path(&format!(".uploads/{}", upload.as_str()))
    }

    fn chunk(&self, upload: &UploadId, offset: u64) -> Path {
        self.path(&format!(".uploads/{}/{offset:020}", upload.as_str()))
    }

    /// The staged chunks of `upload` as (offset, length, path), by offset; empty when nothing is staged.
    async fn chunks(&self, upload: &UploadId) -> Result<Vec<(u64, u64, Path)>, ObjectError> {
        let dir = self.upload_dir(upload);
        let mut chunks: Vec<(u64, u64, Path)> = self
            .store
            .list(Some(&dir))
            .map_err(backend)
            .try_filter_map(|meta| async move {
                let offset = meta
                    .location
                    .filename()
                    .and_then(|name| name.parse::<u64>().ok());
                Ok(offset.map(|offset| (offset, meta.size, meta.location)))
            })
            .try_collect()
            .await?;
        chunks.sort_by_key(|(offset, _, _)| *offset);
        Ok(chunks)
    }

    async fn delete_all(&self, paths: Vec<Path>) -> Result<(), ObjectError> {
        let locations = futures::stream::iter(paths.into_iter().map(Ok)).boxed();
        self.store
            .delete_stream(locations)
            .try_for_each(|_| async { Ok(()) })
            .await
            .or_else(not_found_is_ok)
    }
}

fn backend(e: object_store::Error) -> ObjectError {
    match e {
        object_store::Error::NotFound { .. } => ObjectError::NotFound,
        e => ObjectError::Backend(e.to_string()),
    }
}

fn not_found_is_ok(e: object_store::Error) -> Result<(), ObjectError> {
    match backend(e) {
        ObjectError::NotFound => Ok(()),
        e => Err(e),
    }
}

/// Bytes on their way to `target`: buffered until they fill a part, then streamed by a multipart upload with
/// at most [`PARTS_IN_FLIGHT`] parts uploading; an object smaller than a part is one plain PUT at the end.
/// Either way S3 shows the object only once complete.
struct Upload {
    store: AmazonS3,
    buffer: PutPayloadMut,
    multipart: Option<(Path, WriteMultipart)>,
}

impl Upload {
    fn new(store: &AmazonS3) -> Self {
        Self {
            store: store.clone(),
            buffer: PutPayloadMut::new(),
            multipart: None,
        }
    }

    /// Appends bytes; `target` names where the multipart upload goes if this is the first part to leave.
    async fn write(
        &mut self,
        chunk: Bytes,
        target: impl FnOnce() -> Path,
    ) -> Result<(), ObjectError> {
        if chunk.is_empty() {
            return Ok(());
        }
        if let Some((_, multipart)) = &mut self.multipart {
            multipart
                .wait_for_capacity(PARTS_IN_FLIGHT)
                .await
                .map_err(backend)?;
            multipart.put(chunk);
            return Ok(());
        }
        self.buffer.push(chunk);
        if self.buffer.content_length() >= PART_SIZE {
            let target = target();
            let upload = self.store.put_multipart(&target).await.map_err(backend)?;
            let mut multipart = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            let buffered: PutPayload = std::mem::take(&mut self.buffer).freeze();
            for part in &buffered {
                multipart.put(part.clone());
            }
            self.multipart = Some((target, multipart));
        }
        Ok(())
    }

    /// Completes the upload: `Ok(None)` after a plain PUT to `key`, `Ok(Some(path))` when the bytes went by
    /// multipart to `path` (which may differ from `key`).
    async fn finish(&mut self, key: &Path) -> Result<Option<Path>, ObjectError> {
        match self.multipart.take() {
            None => {
                let payload = std::mem::take(&mut self.buffer).freeze();
                self.store.put(key, payload).await.map_err(backend)?;
                Ok(None)
            }
            // finish aborts the multipart upload itself when it fails.
            Some((path, multipart)) => {
                multipart.finish().await.map_err(backend)?;
                Ok(Some(path))
            }
        }
    }

    async fn abort(&mut self) {
        self.buffer = PutPayloadMut::new();
        if let Some((path, multipart)) = self.multipart.take()
            && let Err(e) = multipart.abort().await
        {
            tracing::warn!(%path, error = %e, "aborting an S3 multipart upload failed");
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // Dropped mid-way (a cut connection): abort the multipart upload so no parts linger.
        if let Some((path, multipart)) = self.multipart.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if let Err(e) = multipart.abort().await {
                    tracing::warn!(%path, error = %e, "aborting an S3 multipart upload failed");
                }
            });
        }
    }
}

/// A new object: small ones wait in memory for one PUT at commit, larger ones stream by multipart upload to a
/// `.staging/` key and are copied server-side to their key at commit (S3 wants the key of a multipart upload at
/// its start, and the port names it only at commit).
struct S3Writer {
    inner: Arc<Inner>,
    upload: Upload,
}

#[async_trait]
impl ObjectWriter for S3Writer {
    async fn write(&mut self, chunk: Bytes) -> Result<(), ObjectError> {
        let inner = &self.inner;
        self.upload.write(chunk, || inner.staging()).await
    }

    async fn commit(mut self: Box<Self>, key: &ObjectKey) -> Result<(), ObjectError> {
        let target = match self.inner.object(key) {
            Ok(target) => target,
            Err(e) => {
                self.upload.abort().await;
                return Err(e);
            }
        };
        let Some(staging) = self.upload.finish(&target).await? else {
            return Ok(());
        };
        let copied = self
            .inner
            .store
            .copy(&staging, &target)
            .await
            .map_err(backend);
        if let Err(e) = self.inner.store.delete(&staging).await {
            tracing::warn!(path = %staging, error = %e, "deleting an S3 staging object failed");
        }
        copied
    }

    async fn abort(mut self: Box<Self>) {
        self.upload.abort().await;
    }
}

/// Streams `stream`, failing unless it yields exactly `len` bytes: a body cut short ends in an error, never in a
/// silently short read.
fn exactly(stream: ByteStream, len: u64) -> ByteStream {
    Box::pin(futures::stream::unfold(
        (stream, 0u64, false),
        move |(mut stream, seen, done)| async move {
            if done {
                return None;
            }
            match stream.next().await {
                Some(Ok(chunk)) => {
                    let seen = seen + chunk.len() as u64;
                    if seen > len {
                        let e = ObjectError::Backend(format!(
                            "S3 sent more than the {len} bytes asked"
                        ));
                        Some((Err(e), (stream, seen, true)))
                    } else {
                        Some((Ok(chunk), (stream, seen, false)))
                    }
                }
                Some(Err(e)) => Some((Err(e), (stream, seen, true))),
                None if seen < len => {
                    let e =
                        ObjectError::Backend(format!("S3 sent {seen} of the {len} bytes asked"));
                    Some((Err(e), (stream, seen, true)))
                }
                None => None,
            }
        },
    ))
}

#[async_trait]
impl ObjectStore for S3Objects {
    async fn begin(&self) -> Result<Box<dyn ObjectWriter>, ObjectError> {
        Ok(Box::new(S3Writer {
            inner: self.inner.clone(),
            upload: Upload::new(&self.inner.store),
        }))
    }

    async fn size(&self, key: &ObjectKey) -> Result<u64, ObjectError> {
        let path = self.inner.object(key)?;
        Ok(self.inner.store.head(&path).await.map_err(backend)?.size)
    }

    async fn read(&self, key: &ObjectKey, start: u64, len: u64) -> Result<ByteStream, ObjectError> {
        let path = self.inner.object(key)?;
        if len == 0 {
            // S3 has no empty range: check the object and the start, answer nothing.
            let size = self.inner.store.head(&path).await.map_err(backend)?.size;
            if start > size {
                return Err(ObjectError::Backend(format!(
                    "range starts at {start}, past the end of a {size}-byte object"
                )));
            }
            return Ok(Box::pin(futures::stream::empty()));
        }
        let end = start
            .checked_add(len)
            .ok_or_else(|| ObjectError::Backend("range overflows".into()))?;
        let options = GetOptions {
            range: Some(GetRange::Bounded(start..end)),
            ..GetOptions::default()
        };
        let result = self
            .inner
            .store
            .get_opts(&path, options)
            .await
            .map_err(backend)?;
        if result.range != (start..end) {
            return Err(ObjectError::Backend(format!(
                "range {start}..{end} runs past the end of a {}-byte object",
                result.meta.size
            )));
        }
        Ok(exactly(result.into_stream().map_err(backend).boxed(), len))
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), ObjectError> {
        let path = self.inner.object(key)?;
        self.inner
            .store
            .delete(&path)
            .await
            .or_else(not_found_is_ok)
    }

    async fn presigned_get(
        &self,
        key: &ObjectKey,
        expires_in_secs: u64,
    ) -> Result<Option<String>, ObjectError> {
        let path = self.inner.object(key)?;
        let signer = self.inner.public.as_ref().unwrap_or(&self.inner.store);
        let expires = Duration::from_secs(expires_in_secs.clamp(1, MAX_PRESIGN_SECS));
        let url = signer
            .signed_url(object_store::signer::Method::GET, &path, expires)
            .await
            .map_err(backend)?;
        Ok(Some(url.to_string()))
    }

    async fn stage_chunk(
        &self,
        upload: &UploadId,
        offset: u64,
        chunk: Bytes,
    ) -> Result<(), ObjectError> {
        let path = self.inner.chunk(upload, offset);
        self.inner
            .store
            .put(&path, chunk.into())
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn read_staged(&self, upload: &UploadId) -> Result<ByteStream, ObjectError> {
        let chunks = self.inner.chunks(upload).await?;
        if chunks.is_empty() {
            return Err(ObjectError::NotFound);
        }
        Ok(stream_chunks(self.inner.clone(), chunks))
    }

    async fn promote_staged(&self, upload: &UploadId, key: &ObjectKey) -> Result<(), ObjectError> {
        let target = self.inner.object(key)?;
        let chunks = self.inner.chunks(upload).await?;
        if chunks.is_empty() {
            return Err(ObjectError::NotFound);
        }
        let paths: Vec<Path> = chunks.iter().map(|(_, _, path)| path.clone()).collect();
        if let [(0, _, only)] = chunks.as_slice() {
            // One chunk: a server-side copy.
            self.inner
                .store
                .copy(only, &target)
                .await
                .map_err(backend)?;
        } else {
            // Several: stream them in order into a multipart upload straight to the key (S3 shows it only once
            // complete, so the key needs no staging here).
            let mut bytes = stream_chunks(self.inner.clone(), chunks);
            let mut upload = Upload::new(&self.inner.store);
            while let Some(chunk) = bytes.next().await {
                let written = match chunk {
                    Ok(chunk) => upload.write(chunk, || target.clone()).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = written {
                    upload.abort().await;
                    return Err(e);
                }
            }
            upload.finish(&target).await?;
        }
        self.inner.delete_all(paths).await
    }

    async fn discard_staged(&self, upload: &UploadId) -> Result<(), ObjectError> {
        let paths = self
            .inner
            .chunks(upload)
            .await?
            .into_iter()
            .map(|(_, _, path)| path)
            .collect();
        self.inner.delete_all(paths).await
    }
}

/// Streams staged chunks (sorted by offset) as the upload's bytes: where chunks overlap (a chunk sent again
/// with other bounds), the bytes already streamed win; a gap is an error.
fn stream_chunks(inner: Arc<Inner>, chunks: Vec<(u64, u64, Path)>) -> ByteStream {
    let pieces = futures::stream::iter(chunks)
        .scan(0u64, |position, (offset, len, path)| {
            let end = offset + len;
            let piece = if offset > *position {
                Err(ObjectError::Backend(format!(
                    "the staged upload has a gap at bytes {}..{offset}",
                    *position
                )))
            } else if end <= *position {
                Ok(None)
            } else {
                let skip = *position - offset;
                *position = end;
                Ok(Some((path, skip, len - skip)))
            };
            futures::future::ready(Some(piece))
        })
        .try_filter_map(|piece| async move { Ok(piece) });
    let mut failed = false;
    Box::pin(
        pieces
            .then(move |piece| {
                let inner = inner.clone();
                async move {
                    let (path, skip, len) = piece?;
                    let options = GetOptions {
                        range: Some(GetRange::Bounded(skip..skip + len)),
                        ..GetOptions::default()
                    };
                    let result = inner
                        .store
                        .get_opts(&path, options)
                        .await
                        .map_err(backend)?;
                    Ok::<_, ObjectError>(exactly(
                        result.into_stream().map_err(backend).boxed(),
                        len,
                    ))
                }
            })
            .map(|opened| match opened {
                Ok(stream) => stream,
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            })
            .flatten()
            .take_while(move |chunk| {
                // Stop after the first error.
                let go = !failed;
                failed |= chunk.is_err();
                futures::future::ready(go)
            }),
    )
}

#[cfg(test)]
mod tests {
    use super::Settings;

    #[test]
    fn urls_are_parsed_and_checked() {
        let settings = Settings::parse(
            "s3://chat4all-files/tenant/a?endpoint=http://127.0.0.1:8333/&region=eu-west-1\
             &public_endpoint=http%3A%2F%2Ffiles.local%3A9000&access_key_id=k&secret_access_key=s%2Bx",
        )
        .unwrap();
        assert_eq!(
            settings,
            Settings {
                bucket: "chat4all-files".into(),
                prefix: Some("tenant/a".into()),
                endpoint: Some("http://127.0.0.1:8333".into()),
                public_endpoint: Some("http://files.local:9000".into()),
                region: Some("eu-west-1".into()),
                access_key_id: Some("k".into()),
                secret_access_key: Some("s+x".into()),
            }
        );
        assert_eq!(Settings::parse("s3://bucket").unwrap().prefix, None);
        for bad in [
            "file:///tmp",
            "s3://",
            "s3://UPPER",
            "s3://b",
            "s3://bucket?endpoint=127.0.0.1:8333",
            "s3://bucket?colour=blue",
            "s3://bucket?region=a&region=b",
            "s3://bucket?access_key_id=only",
            "s3://bucket?public_endpoint=http://x",
            "s3://bucket/../up",
            "s3://bucket?region=%zz",
        ] {
            assert!(Settings::parse(bad).is_err(), "{bad} is refused");
        }
    }
}
