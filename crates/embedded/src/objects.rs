//! Local object storage: a directory under the data dir. Objects are written to `.staging/` and renamed into
//! place only when complete (after an fsync), so a cut upload never leaves a half-written file that looks whole;
//! resumable uploads are sparse files under `.uploads/` written at the chunk's offset.

use async_trait::async_trait;
use bytes::Bytes;
use chat4all_core::ids::UploadId;
use chat4all_core::ports::{ByteStream, ObjectError, ObjectKey, ObjectStore, ObjectWriter};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Bytes read per chunk of a download stream.
const READ_CHUNK: usize = 1024 * 1024;
/// Chunks in flight between a writer and its disk thread: bounds memory whatever the file size.
const WRITE_QUEUE: usize = 4;

/// Objects in a local directory.
pub struct LocalObjects {
    root: PathBuf,
}

impl LocalObjects {
    /// Objects under `root`; leftovers of uploads cut by a crash are removed.
    pub fn open(root: &Path) -> Result<Self, ObjectError> {
        for dir in [root.join(".staging"), root.join(".uploads")] {
            std::fs::create_dir_all(&dir).map_err(io)?;
        }
        if let Ok(entries) = std::fs::read_dir(root.join(".staging")) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    /// The path of `key`, refusing anything that could leave the root (defence in depth: keys are built from
    /// validated parts already).
    fn path(&self, key: &ObjectKey) -> Result<PathBuf, ObjectError> {
        let relative = Path::new(key.as_str());
        let safe = relative.components().all(
            |c| matches!(c, Component::Normal(part) if !part.to_string_lossy().starts_with('.')),
        );
        if !safe || key.as_str().contains('\0') {
            return Err(ObjectError::Backend(format!(
                "refusing object key {:?}",
                key.as_str()
            )));
        }
        Ok(self.root.join(relative))
    }

    fn staged(&self, upload: &UploadId) -> PathBuf {
        self.root.join(".uploads").join(upload.as_str())
    }
}

fn io(e: std::io::Error) -> ObjectError {
    if e.kind() == std::io::ErrorKind::NotFound {
        ObjectError::NotFound
    } else {
        ObjectError::Backend(e.to_string())
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ObjectError> + Send + 'static,
) -> Result<T, ObjectError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ObjectError::Backend(format!("storage task failed: {e}")))?
}

/// Makes `file` durable, moves it to `target` and makes the rename durable.
fn publish(file: &File, from: &Path, target: &Path) -> Result<(), ObjectError> {
    file.sync_all().map_err(io)?;
    let parent = target
        .parent()
        .ok_or_else(|| ObjectError::Backend("object key without a folder".into()))?;
    std::fs::create_dir_all(parent).map_err(io)?;
    std::fs::rename(from, target).map_err(io)?;
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(io)
}

/// Streams `len` bytes of `file` from its current position, reading on a blocking thread.
fn stream_file(mut file: File, len: u64) -> ByteStream {
    let (sender, receiver) = mpsc::channel::<Result<Bytes, ObjectError>>(4);
    tokio::task::spawn_blocking(move || {
        let mut left = len;
        while left > 0 {
            let want = READ_CHUNK.min(left as usize);
            let mut buffer = Vec::with_capacity(want);
            // read_to_end fills the spare capacity without zeroing it first.
            let done = match (&mut file)
                .take(want as u64)
                .read_to_end(&mut buffer)
                .map_err(io)
            {
                Ok(0) => Err(ObjectError::Backend(
                    "the object is shorter than expected".into(),
                )),
                Ok(n) => {
                    left -= n as u64;
                    Ok(Bytes::from(buffer))
                }
                Err(e) => Err(e),
            };
            let failed = done.is_err();
            if sender.blocking_send(done).is_err() || failed {
                return;
            }
        }
    });
    Box::pin(futures::stream::unfold(
        receiver,
        |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) },
    ))
}

/// A new object written on a blocking thread fed through a bounded queue.
struct LocalWriter {
    queue: Option<mpsc::Sender<Bytes>>,
    disk: Option<JoinHandle<Result<File, ObjectError>>>,
    staging: PathBuf,
    root: PathBuf,
}

impl LocalWriter {
    fn start(root: &Path) -> Result<Self, ObjectError> {
        let staging = root
            .join(".staging")
            .join(uuid::Uuid::new_v4().simple().to_string());
        let mut file = File::create_new(&staging).map_err(io)?;
        let (queue, mut chunks) = mpsc::channel::<Bytes>(WRITE_QUEUE);
        let disk = tokio::task::spawn_blocking(move || {
            while let Some(chunk) = chunks.blocking_recv() {
                file.write_all(&chunk).map_err(io)?;
            }
            Ok(file)
        });
        Ok(Self {
            queue: Some(queue),
            disk: Some(disk),
            staging,
            root: root.to_owned(),
        })
    }

    async fn finish_writing(&mut self) -> Result<File, ObjectError> {
        drop(self.queue.take());
        let disk = self
            .disk
            .take()
            .ok_or_else(|| ObjectError::Backend("writer already finished".into()))?;
        disk.await
            .map_err(|e| ObjectError::Backend(format!("storage task failed: {e}")))?
    }
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        if self.disk.is_some() {
            // Dropped without commit (a cut connection): nothing may stay behind.
            drop(self.queue.take());
            let staging = self.staging.clone();
            let disk = self.disk.take();
            tokio::spawn(async move {
                if let Some(disk) = disk {
                    let _ = disk.await;
                }
                let _ = tokio::fs::remove_file(staging).await;
            });
        }
    }
}

#[async_trait]
impl ObjectWriter for LocalWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), ObjectError> {
        let queue = self
            .queue
            .as_ref()
            .ok_or_else(|| ObjectError::Backend("writer already finished".into()))?;
        if queue.send(chunk).await.is_err() {
            // The disk thread stopped: its error says why.
            return Err(self
                .finish_writing()
                .await
                .err()
                .unwrap_or_else(|| ObjectError::Backend("write failed".into())));
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>, key: &ObjectKey) -> Result<(), ObjectError> {
        let target = LocalObjects {
            root: self.root.clone(),
        }
        .path(key)?;
        let file = self.finish_writing().await;
        let staging = self.staging.clone();
        let result = match file {
            Ok(file) => {
                let from = staging.clone();
                blocking(move || publish(&file, &from, &target)).await
            }
            Err(e) => Err(e),
        };
        if result.is_err() {
            let _ = tokio::fs::remove_file(&staging).await;
        }
        result
    }

    async fn abort(mut self: Box<Self>) {
        let _ = self.finish_writing().await;
        let _ = tokio::fs::remove_file(&self.staging).await;
    }
}

#[async_trait]
impl ObjectStore for LocalObjects {
    async fn begin(&self) -> Result<Box<dyn ObjectWriter>, ObjectError> {
        Ok(Box::new(LocalWriter::start(&self.root)?))
    }

    async fn size(&self, key: &ObjectKey) -> Result<u64, ObjectError> {
        let path = self.path(key)?;
        Ok(tokio::fs::metadata(path).await.map_err(io)?.len())
    }

    async fn read(&self, key: &ObjectKey, start: u64, len: u64) -> Result<ByteStream, ObjectError> {
        let path = self.path(key)?;
        let file = blocking(move || {
            let mut file = File::open(path).map_err(io)?;
            file.seek(SeekFrom::Start(start)).map_err(io)?;
            Ok(file)
        })
        .await?;
        Ok(stream_file(file, len))
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), ObjectError> {
        match tokio::fs::remove_file(self.path(key)?).await.map_err(io) {
            Ok(()) | Err(ObjectError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn presigned_get(
        &self,
        _key: &ObjectKey,
        _expires_in_secs: u64,
    ) -> Result<Option<String>, ObjectError> {
        Ok(None)
    }

    async fn stage_chunk(
        &self,
        upload: &UploadId,
        offset: u64,
        chunk: Bytes,
    ) -> Result<(), ObjectError> {
        let path = self.staged(upload);
        blocking(move || {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)
                .map_err(io)?;
            file.write_all_at(&chunk, offset).map_err(io)?;
            file.sync_data().map_err(io)
        })
        .await
    }

    async fn read_staged(&self, upload: &UploadId) -> Result<ByteStream, ObjectError> {
        let path = self.staged(upload);
        let (file, len) = blocking(move || {
            let file = File::open(path).map_err(io)?;
            let len = file.metadata().map_err(io)?.len();
            Ok((file, len))
        })
        .await?;
        Ok(stream_file(file, len))
    }

    async fn promote_staged(&self, upload: &UploadId, key: &ObjectKey) -> Result<(), ObjectError> {
        let (from, target) = (self.staged(upload), self.path(key)?);
        blocking(move || {
            let file = File::open(&from).map_err(io)?;
            publish(&file, &from, &target)
        })
        .await
    }

    async fn discard_staged(&self, upload: &UploadId) -> Result<(), ObjectError> {
        match tokio::fs::remove_file(self.staged(upload))
            .await
            .map_err(io)
        {
            Ok(()) | Err(ObjectError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
