//! `POST /v1/files`: streamed multipart uploads, and the answer describing a stored file (shared with resumable
//! uploads in `uploads`). Download links and the file's bytes are in `downloads`.

use super::extract::{AuthUser, Idempotency};
use super::problem::{ApiResult, Problem};
use super::schema::{Binary, Id};
use super::state::AppState;
use super::upload_parts::UploadParts;
use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use chat4all_core::model::FileMeta;
use chat4all_core::services::files::IncomingFile;
use serde::Serialize;
use utoipa::openapi::schema::ObjectBuilder;
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

/// A stored file, as the upload answers it.
#[derive(Serialize, ToSchema)]
pub struct FileResponse {
    file_id: String,
    conversation_id: String,
    filename: String,
    size_bytes: u64,
    mimetype: String,
    /// `sha256:<hex>`
    checksum: String,
    uploaded_at: i64,
    /// Time-limited link usable without a token.
    download_url: String,
    expires_at: i64,
}

/// The answer describing a stored file, with a fresh download link.
pub(super) async fn file_response(state: &AppState, file: FileMeta) -> ApiResult<FileResponse> {
    let link = state.files.link(&file, &state.public_url).await?;
    Ok(FileResponse {
        file_id: file.file_id.into(),
        conversation_id: file.conversation_id.into(),
        filename: file.filename,
        size_bytes: file.size_bytes,
        mimetype: file.mimetype,
        checksum: file.checksum,
        uploaded_at: file.uploaded_at,
        download_url: link.url,
        expires_at: link.expires_at,
    })
}

/// Registers the upload counter at zero for every size bucket.
pub fn register_metrics() {
    for bytes in [0, 1 << 20, 100 << 20, 1 << 30] {
        metrics::counter!("files_uploaded_total", "service" => "api", "size_bucket" => size_bucket(bytes))
            .absolute(0);
    }
}

/// Counts a stored file in `files_uploaded_total`.
pub(super) fn count_stored(file: &FileMeta) {
    metrics::counter!("files_uploaded_total", "service" => "api", "size_bucket" => size_bucket(file.size_bytes))
        .increment(1);
}

fn size_bucket(bytes: u64) -> &'static str {
    match bytes {
        0..1_048_576 => "lt_1mib",
        1_048_576..104_857_600 => "1mib_100mib",
        104_857_600..1_073_741_824 => "100mib_1gib",
        _ => "gte_1gib",
    }
}

/// Largest text part of an upload (`conversation_id`).
const MAX_TEXT_PART_BYTES: usize = 1024;

/// The multipart body of an upload: parts `file` (with its filename) and `conversation_id`, in any order.
pub enum UploadForm {}

impl PartialSchema for UploadForm {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .property("file", Binary::schema())
            .property("conversation_id", Id::schema())
            .required("file")
            .required("conversation_id")
            .into()
    }
}

impl ToSchema for UploadForm {}

/// Uploads a file, streamed to storage in constant memory while its SHA-256 is computed; other parts than
/// `file` and `conversation_id` are refused, and `conversation_id` may not pass 1 KiB.
#[utoipa::path(post, path = "/v1/files", tag = "files", security(("bearer" = [])),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    params(Idempotency),
    responses((status = 201, body = FileResponse),
        (status = 400, description = "Not a multipart body, or a part is missing, repeated, unknown or invalid."),
        (status = 403, description = "Not a member of the conversation."),
        (status = 413, description = "The file is over the size limit (2 GiB unless configured), `conversation_id` over 1 KiB, or part headers over 4 MiB."),
        (status = 422, description = "The `Idempotency-Key` was used with another request.")))]
pub async fn upload(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Idempotency(key): Idempotency,
    request: Request,
) -> ApiResult<(StatusCode, Json<FileResponse>)> {
    let mut parts = UploadParts::from_request(request).await?;
    let mut conversation: Option<String> = None;
    let mut received: Option<(IncomingFile, String, Option<String>)> = None;
    let outcome: ApiResult<()> = async {
        while let Some(mut part) = parts.next().await? {
            match part.name() {
                Some("conversation_id") if conversation.is_none() => {
                    conversation = Some(part.text(MAX_TEXT_PART_BYTES).await?.trim().to_owned());
                }
                Some("file") if received.is_none() => {
                    let filename = part.file_name().unwrap_or("file").to_owned();
                    let mimetype = part.content_type().map(str::to_owned).or_else(|| {
                        mime_guess::from_path(&filename)
                            .first()
                            .map(|m| m.essence_str().to_owned())
                    });
                    let mut incoming = state.files.receive().await?;
                    let streamed: ApiResult<()> = async {
                        while let Some(chunk) = part.chunk().await? {
                            incoming.write(chunk).await?;
                        }
                        Ok(())
                    }
                    .await;
                    if let Err(problem) = streamed {
                        incoming.abort().await;
                        return Err(problem);
                    }
                    received = Some((incoming, filename, mimetype));
                }
                Some(name @ ("file" | "conversation_id")) => {
                    return Err(Problem::bad_request(format!(
                        "the multipart body has more than one `{name}` part"
                    )));
                }
                other => {
                    return Err(Problem::bad_request(format!(
                        "unexpected multipart part {:?}: only `file` and `conversation_id` are accepted",
                        other.unwrap_or_default()
                    )));
                }
            }
        }
        Ok(())
    }
    .await;
    let Some((incoming, filename, mimetype)) = received else {
        outcome?;
        return Err(Problem::bad_request(
            "the multipart body has no `file` part",
        ));
    };
    if let Err(problem) = outcome {
        incoming.abort().await;
        return Err(problem);
    }
    let Some(conversation) = conversation else {
        incoming.abort().await;
        return Err(Problem::bad_request(
            "the multipart body has no `conversation_id` part",
        ));
    };
    let file = state
        .files
        .store_received(
            &caller,
            &conversation,
            &filename,
            mimetype.as_deref(),
            incoming,
            key.as_ref(),
        )
        .await?;
    count_stored(&file);
    tracing::info!(file_id = %file.file_id, conversation_id = %file.conversation_id, size_bytes = file.size_bytes, "file uploaded");
    Ok((
        StatusCode::CREATED,
        Json(file_response(&state, file).await?),
    ))
}
