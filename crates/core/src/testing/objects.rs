//! Object storage in memory.

use crate::ids::UploadId;
use crate::ports::{ByteStream, ObjectError, ObjectKey, ObjectStore, ObjectWriter};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Objects and staged uploads held in memory; links are left to the api to sign, as in embedded mode.
#[derive(Default)]
pub struct MemoryObjects {
    objects: Arc<Mutex<HashMap<ObjectKey, Bytes>>>,
    staged: Mutex<HashMap<UploadId, Vec<u8>>>,
}

/// A test that panicked while holding a lock must not hide the rest of the run's failures.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn one_chunk(bytes: Bytes) -> ByteStream {
    Box::pin(futures::stream::iter([Ok(bytes)]))
}

/// Buffers the object until commit, so nothing is visible before.
struct MemoryWriter {
    bytes: Vec<u8>,
    objects: Arc<Mutex<HashMap<ObjectKey, Bytes>>>,
}

#[async_trait]
impl ObjectWriter for MemoryWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), ObjectError> {
        self.bytes.extend_from_slice(&chunk);
        Ok(())
    }

    async fn commit(self: Box<Self>, key: &ObjectKey) -> Result<(), ObjectError> {
        lock(&self.objects).insert(key.clone(), self.bytes.into());
        Ok(())
    }

    async fn abort(self: Box<Self>) {}
}

#[async_trait]
impl ObjectStore for MemoryObjects {
    async fn begin(&self) -> Result<Box<dyn ObjectWriter>, ObjectError> {
        Ok(Box::new(MemoryWriter {
            bytes: Vec::new(),
            objects: self.objects.clone(),
        }))
    }

    async fn size(&self, key: &ObjectKey) -> Result<u64, ObjectError> {
        let objects = lock(&self.objects);
        Ok(objects.get(key).ok_or(ObjectError::NotFound)?.len() as u64)
    }

    async fn read(&self, key: &ObjectKey, start: u64, len: u64) -> Result<ByteStream, ObjectError> {
        let object = lock(&self.objects)
            .get(key)
            .cloned()
            .ok_or(ObjectError::NotFound)?;
        let end = start
            .checked_add(len)
            .filter(|end| *end <= object.len() as u64)
            .ok_or_else(|| ObjectError::Backend("the range runs past the end".into()))?;
        Ok(one_chunk(object.slice(start as usize..end as usize)))
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), ObjectError> {
        lock(&self.objects).remove(key);
        Ok(())
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
        let mut staged = lock(&self.staged);
        let bytes = staged.entry(upload.clone()).or_default();
        let (start, end) = (offset as usize, offset as usize + chunk.len());
        if bytes.len() < end {
            bytes.resize(end, 0);
        }
        bytes[start..end].copy_from_slice(&chunk);
        Ok(())
    }

    async fn read_staged(&self, upload: &UploadId) -> Result<ByteStream, ObjectError> {
        let bytes = lock(&self.staged)
            .get(upload)
            .cloned()
            .ok_or(ObjectError::NotFound)?;
        Ok(one_chunk(bytes.into()))
    }

    async fn promote_staged(&self, upload: &UploadId, key: &ObjectKey) -> Result<(), ObjectError> {
        let bytes = lock(&self.staged)
            .remove(upload)
            .ok_or(ObjectError::NotFound)?;
        lock(&self.objects).insert(key.clone(), bytes.into());
        Ok(())
    }

    async fn discard_staged(&self, upload: &UploadId) -> Result<(), ObjectError> {
        lock(&self.staged).remove(upload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::MemoryObjects;
    use std::sync::Arc;

    #[tokio::test]
    async fn meets_the_object_storage_contract() {
        crate::contract::objects::run_all(Arc::new(MemoryObjects::default())).await;
    }
}
