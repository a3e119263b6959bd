//! Files: streamed multipart upload, streamed download, resumable uploads; each with a progress callback.

use crate::types::{DownloadLink, FileInfo, NewUpload, UploadState};
use crate::{Client, Error, Result, segment};
use futures::StreamExt;
use reqwest::Method;
use reqwest::multipart::{Form, Part};
use std::path::Path;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};

/// The chunk size of resumable uploads when the caller does not choose one (capped by the server's).
pub const DEFAULT_CHUNK_BYTES: u64 = 8 * 1024 * 1024;

impl Client {
    /// `POST /v1/files`: uploads a local file to a conversation, streamed from disk (constant memory).
    /// `progress(sent, total)` is called as bytes leave.
    pub async fn upload_file(
        &self,
        path: &Path,
        conversation_id: &str,
        progress: impl FnMut(u64, u64) + Send + 'static,
    ) -> Result<FileInfo> {
        let file = tokio::fs::File::open(path).await?;
        let size = file.metadata().await?.len();
        let filename = file_name(path)?;
        self.upload_reader(file, size, &filename, conversation_id, progress)
            .await
    }

    /// `POST /v1/files` from any reader of exactly `size` bytes, streamed; `progress(sent, size)` as bytes leave.
    pub async fn upload_reader(
        &self,
        reader: impl AsyncRead + Send + 'static,
        size: u64,
        filename: &str,
        conversation_id: &str,
        mut progress: impl FnMut(u64, u64) + Send + 'static,
    ) -> Result<FileInfo> {
        let mut sent = 0u64;
        let stream =
            tokio_util::io::ReaderStream::with_capacity(reader, 64 * 1024).map(move |chunk| {
                if let Ok(bytes) = &chunk {
                    sent += bytes.len() as u64;
                    progress(sent, size);
                }
                chunk
            });
        let part = Part::stream_with_length(reqwest::Body::wrap_stream(stream), size)
            .file_name(filename.to_owned());
        // The conversation first, so that the server knows where the file goes before its bytes arrive.
        let form = Form::new()
            .text("conversation_id", conversation_id.to_owned())
            .part("file", part);
        let request = self.authed(Method::POST, "/v1/files")?.multipart(form);
        self.json(request).await
    }

    /// `GET /v1/files/{id}/download`: a time-limited link usable without the token, with the file's metadata.
    pub async fn download_link(&self, file_id: &str) -> Result<DownloadLink> {
        let path = format!("/v1/files/{}/download", segment(file_id));
        self.json(self.authed(Method::GET, &path)?).await
    }

    /// `GET /v1/files/{id}/content`: streams the file's bytes into `writer` (flushed at the end);
    /// `progress(received, total)` as they arrive (`total` from `Content-Length`). Returns the byte count.
    pub async fn download_to(
        &self,
        file_id: &str,
        writer: &mut (impl AsyncWrite + Unpin),
        mut progress: impl FnMut(u64, Option<u64>),
    ) -> Result<u64> {
        let path = format!("/v1/files/{}/content", segment(file_id));
        let response = self.execute(self.authed(Method::GET, &path)?).await?;
        let total = response.content_length();
        let mut received = 0u64;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            writer.write_all(&chunk).await?;
            received += chunk.len() as u64;
            progress(received, total);
        }
        writer.flush().await?;
        if let Some(total) = total.filter(|&t| t != received) {
            return Err(Error::Decode(format!(
                "the download stopped at {received} of {total} bytes"
            )));
        }
        Ok(received)
    }

    /// Downloads a file into `path` (created or truncated). Returns the byte count.
    pub async fn download_file(
        &self,
        file_id: &str,
        path: &Path,
        progress: impl FnMut(u64, Option<u64>),
    ) -> Result<u64> {
        let mut file = tokio::fs::File::create(path).await?;
        self.download_to(file_id, &mut file, progress).await
    }

    /// `POST /v1/uploads`: starts a resumable upload session (valid 24 h).
    pub async fn create_upload(&self, upload: &NewUpload) -> Result<UploadState> {
        self.json(self.authed(Method::POST, "/v1/uploads")?.json(upload))
            .await
    }

    /// `GET /v1/uploads/{id}`: what the server holds of a resumable upload.
    pub async fn upload_state(&self, upload_id: &str) -> Result<UploadState> {
        let path = format!("/v1/uploads/{}", segment(upload_id));
        self.json(self.authed(Method::GET, &path)?).await
    }

    /// `PUT /v1/uploads/{id}?offset=N`: one chunk (at most the session's `max_chunk_bytes`).
    pub async fn upload_chunk(
        &self,
        upload_id: &str,
        offset: u64,
        bytes: impl Into<bytes::Bytes>,
    ) -> Result<UploadState> {
        let path = format!("/v1/uploads/{}", segment(upload_id));
        let request = self
            .authed(Method::PUT, &path)?
            .query(&[("offset", offset)])
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes.into());
        self.json(request).await
    }

    /// `POST /v1/uploads/{id}/complete`: turns a complete upload into a file.
    pub async fn complete_upload(&self, upload_id: &str) -> Result<FileInfo> {
        let path = format!("/v1/uploads/{}/complete", segment(upload_id));
        self.json(self.authed(Method::POST, &path)?).await
    }

    /// Uploads a local file through a resumable session: a new one, or `resume` (an `upload_id` from an earlier,
    /// interrupted call, for the same file), sending only the ranges the server lacks, chunk by chunk
    /// (`chunk_bytes`, default [`DEFAULT_CHUNK_BYTES`]); `on_session` gets the session id first (keep it to
    /// resume), `progress(held, total)` after each chunk.
    pub async fn upload_resumable(
        &self,
        path: &Path,
        conversation_id: &str,
        resume: Option<&str>,
        chunk_bytes: Option<u64>,
        on_session: impl FnOnce(&str),
        mut progress: impl FnMut(u64, u64),
    ) -> Result<FileInfo> {
        let mut file = tokio::fs::File::open(path).await?;
        let size = file.metadata().await?.len();
        let state = match resume {
            Some(id) => self.upload_state(id).await?,
            None => {
                let upload = NewUpload {
                    conversation_id: conversation_id.to_owned(),
                    filename: file_name(path)?,
                    size_bytes: size,
                    ..NewUpload::default()
                };
                self.create_upload(&upload).await?
            }
        };
        if state.size_bytes != size {
            return Err(Error::Invalid(format!(
                "upload {} expects {} bytes, the file has {size}",
                state.upload_id, state.size_bytes
            )));
        }
        on_session(&state.upload_id);
        let chunk = chunk_bytes
            .unwrap_or(DEFAULT_CHUNK_BYTES)
            .clamp(1, state.max_chunk_bytes.max(1));
        let mut held = state.received_bytes;
        progress(held, size);
        for (start, end) in missing(&state.ranges, size) {
            let mut offset = start;
            while offset < end {
                let len = chunk.min(end - offset);
                let mut buffer = vec![0u8; len as usize];
                file.seek(std::io::SeekFrom::Start(offset)).await?;
                file.read_exact(&mut buffer).await?;
                let state = self.upload_chunk(&state.upload_id, offset, buffer).await?;
                held = state.received_bytes;
                progress(held, size);
                offset += len;
            }
        }
        self.complete_upload(&state.upload_id).await
    }
}

/// The `[start, end)` ranges of `0..size` that `held` (sorted or not) does not cover.
fn missing(held: &[[u64; 2]], size: u64) -> Vec<(u64, u64)> {
    let mut held = held.to_vec();
    held.sort_unstable();
    let mut gaps = Vec::new();
    let mut at = 0;
    for [start, end] in held {
        if start > at {
            gaps.push((at, start.min(size)));
        }
        at = at.max(end);
    }
    if at < size {
        gaps.push((at, size));
    }
    gaps.retain(|(s, e)| s < e);
    gaps
}

/// The last component of a path, as the upload's file name.
fn file_name(path: &Path) -> Result<String> {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::Invalid(format!("{} names no file", path.display())))
}

#[cfg(test)]
mod tests {
    use super::missing;

    #[test]
    fn gaps_are_the_complement_of_the_held_ranges() {
        assert_eq!(missing(&[], 10), vec![(0, 10)]);
        assert_eq!(missing(&[[0, 10]], 10), vec![]);
        assert_eq!(missing(&[[6, 8], [0, 2]], 10), vec![(2, 6), (8, 10)]);
    }
}
