//! The PostgreSQL store's file metadata and resumable upload sessions.

use crate::PostgresStore;
use crate::error::Error;
use crate::rows::{all, files_by_id, parsed};
use async_trait::async_trait;
use chat4all_core::ids::{FileId, UploadId};
use chat4all_core::model::{FileMeta, UploadSession};
use chat4all_core::ports::{FileStore, StoreError};
use tokio_postgres::{GenericClient, Row};

#[async_trait]
impl FileStore for PostgresStore {
    async fn insert_file(&self, file: &FileMeta) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO files (file_id, conversation_id, uploader_id, filename, size_bytes, mimetype, checksum,
                     object_key, uploaded_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &file.file_id.as_str(),
                    &file.conversation_id.as_str(),
                    &file.uploader_id.as_str(),
                    &file.filename,
                    &(file.size_bytes as i64),
                    &file.mimetype,
                    &file.checksum,
                    &file.object_key,
                    &file.uploaded_at,
                ],
            )
            .await
            .map_err(Error::from)?;
        Ok(())
    }

    async fn file(&self, id: &FileId) -> Result<Option<FileMeta>, StoreError> {
        let client = self.client().await?;
        let id = id.as_str().to_owned();
        Ok(files_by_id(&**client, std::slice::from_ref(&id))
            .await?
            .remove(&id))
    }

    async fn insert_upload(&self, upload: &UploadSession) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO uploads (upload_id, conversation_id, uploader_id, filename, mimetype, size_bytes, checksum,
                     created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &upload.upload_id.as_str(),
                    &upload.conversation_id.as_str(),
                    &upload.uploader_id.as_str(),
                    &upload.filename,
                    &upload.mimetype,
                    &(upload.size_bytes as i64),
                    &upload.checksum,
                    &upload.created_at,
                    &upload.expires_at,
                ],
            )
            .await
            .map_err(Error::from)?;
        Ok(())
    }

    async fn upload(&self, id: &UploadId) -> Result<Option<UploadSession>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT upload_id, conversation_id, uploader_id, filename, mimetype, size_bytes, checksum, created_at,
                     expires_at
                 FROM uploads WHERE upload_id = $1",
                &[&id.as_str()],
            )
            .await
            .map_err(Error::from)?;
        Ok(row.map(|r| upload_row(&r)).transpose()?)
    }

    async fn add_upload_range(
        &self,
        id: &UploadId,
        start: u64,
        end: u64,
    ) -> Result<Vec<(u64, u64)>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(Error::from)?;
        let id = id.as_str();
        // One writer per upload at a time: chunks arriving together merge one after the other.
        tx.query(
            "SELECT 1 FROM uploads WHERE upload_id = $1 FOR UPDATE",
            &[&id],
        )
        .await
        .map_err(Error::from)?;
        tx.execute(
            "INSERT INTO upload_ranges (upload_id, range_start, range_end) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&id, &(start as i64), &(end as i64)],
        )
        .await
        .map_err(Error::from)?;
        let merged = merged_ranges(&*tx, id).await?;
        // Keep the table as small as the merged view, so a many-chunk upload stays cheap.
        tx.execute("DELETE FROM upload_ranges WHERE upload_id = $1", &[&id])
            .await
            .map_err(Error::from)?;
        let (starts, ends): (Vec<i64>, Vec<i64>) =
            merged.iter().map(|(s, e)| (*s as i64, *e as i64)).unzip();
        tx.execute(
            "INSERT INTO upload_ranges (upload_id, range_start, range_end)
             SELECT $1, s, e FROM UNNEST($2::BIGINT[], $3::BIGINT[]) AS r (s, e)",
            &[&id, &starts, &ends],
        )
        .await
        .map_err(Error::from)?;
        tx.commit().await.map_err(Error::from)?;
        Ok(merged)
    }

    async fn upload_ranges(&self, id: &UploadId) -> Result<Vec<(u64, u64)>, StoreError> {
        let client = self.client().await?;
        Ok(merged_ranges(&**client, id.as_str()).await?)
    }

    async fn delete_upload(&self, id: &UploadId) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(Error::from)?;
        tx.execute(
            "DELETE FROM upload_ranges WHERE upload_id = $1",
            &[&id.as_str()],
        )
        .await
        .map_err(Error::from)?;
        tx.execute("DELETE FROM uploads WHERE upload_id = $1", &[&id.as_str()])
            .await
            .map_err(Error::from)?;
        tx.commit().await.map_err(Error::from)?;
        Ok(())
    }

    async fn expired_uploads(&self, now: i64) -> Result<Vec<UploadId>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT upload_id FROM uploads WHERE expires_at <= $1",
                &[&now],
            )
            .await
            .map_err(Error::from)?;
        Ok(all(&rows, |r| parsed(r, 0))?)
    }
}

fn upload_row(row: &Row) -> Result<UploadSession, Error> {
    Ok(UploadSession {
        upload_id: parsed(row, 0)?,
        conversation_id: parsed(row, 1)?,
        uploader_id: parsed(row, 2)?,
        filename: row.try_get(3)?,
        mimetype: row.try_get(4)?,
        size_bytes: row.try_get::<_, i64>(5)? as u64,
        checksum: row.try_get(6)?,
        created_at: row.try_get(7)?,
        expires_at: row.try_get(8)?,
    })
}

/// The merged, sorted byte ranges of an upload.
async fn merged_ranges(client: &impl GenericClient, id: &str) -> Result<Vec<(u64, u64)>, Error> {
    let rows = client
        .query(
            "SELECT range_start, range_end FROM upload_ranges WHERE upload_id = $1 ORDER BY range_start, range_end",
            &[&id],
        )
        .await?;
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for row in &rows {
        let (start, end) = (
            row.try_get::<_, i64>(0)? as u64,
            row.try_get::<_, i64>(1)? as u64,
        );
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    Ok(merged)
}
