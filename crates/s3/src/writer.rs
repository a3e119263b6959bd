//! New objects: buffered, then streamed by multipart upload, shown only once complete.

use super::*;

/// Bytes on their way to `target`: buffered until they fill a part, then streamed by a multipart upload with
/// at most [`PARTS_IN_FLIGHT`] parts uploading; an object smaller than a part is one plain PUT at the end.
/// Either way S3 shows the object only once complete.
pub(crate) struct Upload {
    store: AmazonS3,
    buffer: PutPayloadMut,
    multipart: Option<(Path, WriteMultipart)>,
}

impl Upload {
    pub(crate) fn new(store: &AmazonS3) -> Self {
        Self {
            store: store.clone(),
            buffer: PutPayloadMut::new(),
            multipart: None,
        }
    }

    /// Appends bytes; `target` names where the multipart upload goes if this is the first part to leave.
    pub(crate) async fn write(
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
    pub(crate) async fn finish(&mut self, key: &Path) -> Result<Option<Path>, ObjectError> {
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

    pub(crate) async fn abort(&mut self) {
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
pub(crate) struct S3Writer {
    inner: Arc<Inner>,
    upload: Upload,
}

impl S3Writer {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        let upload = Upload::new(&inner.store);
        Self { inner, upload }
    }
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
