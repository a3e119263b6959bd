//! The SQLite store's file metadata and resumable upload sessions.

use super::SqliteStore;
use super::rows::{find_file, merged_ranges, parsed, upload_row};
use async_trait::async_trait;
use chat4all_core::ids::{FileId, UploadId};
use chat4all_core::model::{FileMeta, UploadSession};
use chat4all_core::ports::{FileStore, StoreError};
use rusqlite::{OptionalExtension, params};

#[async_trait]
impl FileStore for SqliteStore {
    async fn insert_file(&self, file: &FileMeta) -> Result<(), StoreError> {
        let file = file.clone();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO files (file_id, conversation_id, uploader_id, filename, size_bytes, mimetype, checksum, object_key, uploaded_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                file.file_id.as_str(),
                file.conversation_id.as_str(),
                file.uploader_id.as_str(),
                file.filename,
                file.size_bytes as i64,
                file.mimetype,
                file.checksum,
                file.object_key,
                file.uploaded_at
            ])
            .map(drop)
        })
        .await
    }

    async fn file(&self, id: &FileId) -> Result<Option<FileMeta>, StoreError> {
        let id = id.clone();
        self.read(move |conn| find_file(conn, id.as_str())).await
    }

    async fn insert_upload(&self, upload: &UploadSession) -> Result<(), StoreError> {
        let upload = upload.clone();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO uploads (upload_id, conversation_id, uploader_id, filename, mimetype, size_bytes, checksum, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                upload.upload_id.as_str(),
                upload.conversation_id.as_str(),
                upload.uploader_id.as_str(),
                upload.filename,
                upload.mimetype,
                upload.size_bytes as i64,
                upload.checksum,
                upload.created_at,
                upload.expires_at
            ])
            .map(drop)
        })
        .await
    }

    async fn upload(&self, id: &UploadId) -> Result<Option<UploadSession>, StoreError> {
        let id = id.clone();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT upload_id, conversation_id, uploader_id, filename, mimetype, size_bytes, checksum, created_at, expires_at
                 FROM uploads WHERE upload_id = ?1",
            )?
            .query_row([id.as_str()], upload_row)
            .optional()
        })
        .await
    }

    async fn add_upload_range(
        &self,
        id: &UploadId,
        start: u64,
        end: u64,
    ) -> Result<Vec<(u64, u64)>, StoreError> {
        let id = id.clone();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO upload_ranges (upload_id, start, end) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![id.as_str(), start as i64, end as i64])?;
            let merged = merged_ranges(conn, id.as_str())?;
            // Keep the table as small as the merged view, so a many-chunk upload stays cheap.
            conn.prepare_cached("DELETE FROM upload_ranges WHERE upload_id = ?1")?
                .execute([id.as_str()])?;
            let mut insert = conn.prepare_cached(
                "INSERT INTO upload_ranges (upload_id, start, end) VALUES (?1, ?2, ?3)",
            )?;
            for (s, e) in &merged {
                insert.execute(params![id.as_str(), *s as i64, *e as i64])?;
            }
            drop(insert);
            Ok(merged)
        })
        .await
    }

    async fn upload_ranges(&self, id: &UploadId) -> Result<Vec<(u64, u64)>, StoreError> {
        let id = id.clone();
        self.read(move |conn| merged_ranges(conn, id.as_str()))
            .await
    }

    async fn delete_upload(&self, id: &UploadId) -> Result<(), StoreError> {
        let id = id.clone();
        self.write(move |conn| {
            conn.execute(
                "DELETE FROM upload_ranges WHERE upload_id = ?1",
                [id.as_str()],
            )?;
            conn.execute("DELETE FROM uploads WHERE upload_id = ?1", [id.as_str()])?;
            Ok(())
        })
        .await
    }

    async fn expired_uploads(&self, now: i64) -> Result<Vec<UploadId>, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached("SELECT upload_id FROM uploads WHERE expires_at <= ?1")?
                .query_map([now], |row| parsed(row, 0))?
                .collect()
        })
        .await
    }
}
