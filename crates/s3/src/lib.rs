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

mod settings;
mod uploads;
mod writer;

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
use settings::Settings;
use std::sync::Arc;
use std::time::Duration;
use uploads::stream_chunks;
use writer::{S3Writer, Upload};

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
        Ok(Box::new(S3Writer::new(self.inner.clone())))
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
