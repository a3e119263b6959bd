//! `/v1/uploads`: resumable uploads, for large files over unreliable links (chunks in any order, then complete).

use super::extract::{ApiJson, ApiQuery, AuthUser};
use super::files::{FileResponse, count_stored, file_response};
use super::problem::ApiResult;
use super::schema::{Binary, Id};
use super::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chat4all_core::services::files::{MAX_CHUNK_BYTES, UploadProgress};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A resumable upload to open.
#[derive(Deserialize, ToSchema)]
pub struct CreateUploadRequest {
    #[schema(value_type = Id)]
    conversation_id: String,
    /// Kept without any path and control characters.
    filename: String,
    /// Total size in bytes (2 GiB at most unless configured).
    size_bytes: u64,
    /// `type/subtype`; anything else is stored as `application/octet-stream`.
    mimetype: Option<String>,
    /// `sha256:<hex>`, verified on completion when given.
    #[schema(pattern = "^[Ss][Hh][Aa]256:[0-9A-Fa-f]{64}$")]
    checksum: Option<String>,
}

/// A resumable upload's state.
#[derive(Serialize, ToSchema)]
pub struct UploadResponse {
    upload_id: String,
    conversation_id: String,
    filename: String,
    size_bytes: u64,
    /// Bytes received so far.
    received_bytes: u64,
    /// Byte ranges received, `[start, end)`, merged and sorted.
    ranges: Vec<[u64; 2]>,
    /// Every byte arrived: it can be completed.
    complete: bool,
    /// Largest chunk accepted.
    max_chunk_bytes: u64,
    expires_at: i64,
}

impl From<UploadProgress> for UploadResponse {
    fn from(progress: UploadProgress) -> Self {
        let complete = progress.is_complete();
        let session = progress.session;
        Self {
            upload_id: session.upload_id.into(),
            conversation_id: session.conversation_id.into(),
            filename: session.filename,
            size_bytes: session.size_bytes,
            received_bytes: progress.ranges.iter().map(|(s, e)| e - s).sum(),
            ranges: progress.ranges.into_iter().map(|(s, e)| [s, e]).collect(),
            complete,
            max_chunk_bytes: MAX_CHUNK_BYTES,
            expires_at: session.expires_at,
        }
    }
}

/// Where a chunk goes.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChunkQuery {
    /// Byte offset of the chunk in the file.
    offset: u64,
}

/// Opens a resumable upload session (expires after 24 h).
#[utoipa::path(post, path = "/v1/uploads", tag = "files", security(("bearer" = [])), request_body = CreateUploadRequest,
    responses((status = 201, body = UploadResponse),
        (status = 403, description = "Not a member of the conversation."),
        (status = 413, description = "The file would be over the size limit.")))]
pub async fn create_upload(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    ApiJson(request): ApiJson<CreateUploadRequest>,
) -> ApiResult<(StatusCode, Json<UploadResponse>)> {
    let session = state
        .files
        .create_upload(
            &caller,
            &request.conversation_id,
            &request.filename,
            request.mimetype.as_deref(),
            request.size_bytes,
            request.checksum.as_deref(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(
            UploadProgress {
                session,
                ranges: Vec::new(),
            }
            .into(),
        ),
    ))
}

/// Stores one chunk (raw body) at `offset`; chunks may arrive in any order or be sent again.
#[utoipa::path(put, path = "/v1/uploads/{id}", tag = "files", security(("bearer" = [])),
    params(("id" = Id, Path, description = "Upload id"), ChunkQuery),
    request_body(content = Binary, content_type = "application/octet-stream", description = "The chunk's bytes (at most 64 MiB)."),
    responses((status = 200, body = UploadResponse),
        (status = 400, description = "An empty chunk, or one that ends past the announced size."),
        (status = 404, description = "No such upload of the caller's, or it expired.")))]
pub async fn put_chunk(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<ChunkQuery>,
    body: Bytes,
) -> ApiResult<Json<UploadResponse>> {
    Ok(Json(
        state
            .files
            .put_chunk(&caller, &id, query.offset, body)
            .await?
            .into(),
    ))
}

/// Which byte ranges arrived.
#[utoipa::path(get, path = "/v1/uploads/{id}", tag = "files", security(("bearer" = [])),
    params(("id" = Id, Path, description = "Upload id")),
    responses((status = 200, body = UploadResponse),
        (status = 404, description = "No such upload of the caller's, or it expired.")))]
pub async fn upload_status(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<UploadResponse>> {
    Ok(Json(state.files.progress(&caller, &id).await?.into()))
}

/// Turns a complete upload into a file (checksum verified).
#[utoipa::path(post, path = "/v1/uploads/{id}/complete", tag = "files", security(("bearer" = [])),
    params(("id" = Id, Path, description = "Upload id")),
    responses((status = 201, body = FileResponse),
        (status = 404, description = "No such upload of the caller's, or it expired."),
        (status = 409, description = "Bytes are missing."),
        (status = 422, description = "The bytes do not match the announced checksum.")))]
pub async fn complete_upload(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<FileResponse>)> {
    let file = state.files.complete_upload(&caller, &id).await?;
    count_stored(&file);
    Ok((
        StatusCode::CREATED,
        Json(file_response(&state, file).await?),
    ))
}
