//! The chunks of resumable uploads, staged one object each under `.uploads/`.

use super::*;

impl Inner {
    pub(crate) fn upload_dir(&self, upload: &UploadId) -> Path {
        self.path(&format!(".uploads/{}", upload.as_str()))
    }

    pub(crate) fn chunk(&self, upload: &UploadId, offset: u64) -> Path {
        self.path(&format!(".uploads/{}/{offset:020}", upload.as_str()))
    }

    /// The staged chunks of `upload` as (offset, length, path), by offset; empty when nothing is staged.
    pub(crate) async fn chunks(
        &self,
        upload: &UploadId,
    ) -> Result<Vec<(u64, u64, Path)>, ObjectError> {
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
}

/// Streams staged chunks (sorted by offset) as the upload's bytes: where chunks overlap (a chunk sent again
/// with other bounds), the bytes already streamed win; a gap is an error.
pub(crate) fn stream_chunks(inner: Arc<Inner>, chunks: Vec<(u64, u64, Path)>) -> ByteStream {
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
