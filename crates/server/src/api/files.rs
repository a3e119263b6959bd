//! `/v1/files`: streamed multipart uploads, signed downloads, content with Range.

use super::extract::{ApiQuery, AuthUser, Idempotency, bearer_user};
use super::problem::{ApiResult, Problem};
use super::schema::{Binary, Id};
use super::state::AppState;
use super::upload_parts::UploadParts;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chat4all_core::model::FileMeta;
use chat4all_core::services::files::{DownloadAccess, IncomingFile};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::ObjectBuilder;
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, PartialSchema, ToSchema};

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

/// A time-limited download link.
#[derive(Serialize, ToSchema)]
pub struct DownloadResponse {
    file_id: String,
    filename: String,
    size_bytes: u64,
    mimetype: String,
    checksum: String,
    download_url: String,
    expires_at: i64,
    /// Seconds until the link expires.
    expires_in: u64,
}

/// Signature of a link from `/download` (both or neither).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SignedQuery {
    /// Expiry, seconds since the epoch.
    expires: Option<i64>,
    /// Hex HMAC.
    signature: Option<String>,
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

/// A time-limited URL for the file, usable without the bearer token (members only).
#[utoipa::path(get, path = "/v1/files/{id}/download", tag = "files", security(("bearer" = [])),
    params(("id" = Id, Path, description = "File id")),
    responses((status = 200, body = DownloadResponse),
        (status = 404, description = "No such file, or one of a conversation the caller is not in.")))]
pub async fn download(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<DownloadResponse>> {
    let file = state
        .files
        .authorize(&id, DownloadAccess::Member(&caller))
        .await?;
    let link = state.files.link(&file, &state.public_url).await?;
    Ok(Json(DownloadResponse {
        file_id: file.file_id.into(),
        filename: file.filename,
        size_bytes: file.size_bytes,
        mimetype: file.mimetype,
        checksum: file.checksum,
        download_url: link.url,
        expires_at: link.expires_at,
        expires_in: link.expires_in,
    }))
}

/// The file's bytes, for a member's bearer token or a valid signature; honours a single `Range`.
#[utoipa::path(get, path = "/v1/files/{id}/content", tag = "files", security(("bearer" = []), ()),
    params(("id" = Id, Path, description = "File id"), SignedQuery,
        ("Range" = Option<String>, Header, description = "One byte range, `bytes=first-last`, `bytes=first-` or `bytes=-suffix`; anything else is ignored.")),
    responses(
        (status = 200, description = "The bytes, with the file's `Content-Type`.", content_type = "*/*", body = Binary,
            headers(("Content-Disposition" = String), ("ETag" = String, description = "`\"sha256:<hex>\"`"), ("Accept-Ranges" = String))),
        (status = 206, description = "The requested range.", content_type = "*/*", body = Binary,
            headers(("Content-Range" = String, description = "`bytes first-last/size`"), ("Content-Disposition" = String), ("ETag" = String))),
        (status = 400, description = "A malformed query string."),
        (status = 401, description = "Neither a valid bearer token nor a signature."),
        (status = 403, description = "A bad or expired signature, whether or not the file exists."),
        (status = 404, description = "No such file, or one of a conversation the caller is not in."),
        (status = 416, description = "The range is outside the file.", headers(("Content-Range" = String, description = "`bytes */size`")))))]
pub async fn content(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<SignedQuery>,
) -> ApiResult<Response> {
    let file = match (query.expires, query.signature.as_deref()) {
        (Some(expires), Some(signature)) => {
            state
                .files
                .authorize(&id, DownloadAccess::Signed { expires, signature })
                .await?
        }
        (None, None) => {
            let caller = bearer_user(&headers, &state).await?;
            state
                .files
                .authorize(&id, DownloadAccess::Member(&caller))
                .await?
        }
        _ => {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "a signed link needs both expires and signature",
            ));
        }
    };
    let size = file.size_bytes;
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(spec) => match parse_range(spec, size) {
            RangeRequest::Satisfiable(start, end) => Some((start, end)),
            RangeRequest::Ignored => None,
            RangeRequest::OutOfRange => {
                return Err(Problem::bad_request(
                    "a Range position is larger than 18446744073709551615",
                ));
            }
            RangeRequest::Unsatisfiable => {
                let mut response = Problem::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    format!("the file has {size} bytes"),
                )
                .into_response();
                response.headers_mut().insert(
                    header::CONTENT_RANGE,
                    header_value(&format!("bytes */{size}")),
                );
                return Ok(response);
            }
        },
    };
    let (start, len) = range.map_or((0, size), |(start, end)| (start, end - start + 1));
    let stream = state.files.read(&file, start, len).await?;
    let body = Body::from_stream(stream);
    let mut response = Response::new(body);
    let out = response.headers_mut();
    out.insert(header::CONTENT_TYPE, header_value(&file.mimetype));
    out.insert(header::CONTENT_LENGTH, header_value(&len.to_string()));
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    out.insert(
        header::CONTENT_DISPOSITION,
        header_value(&content_disposition(&file.filename)),
    );
    out.insert(
        header::ETAG,
        header_value(&format!("\"{}\"", file.checksum)),
    );
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    out.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    if let Some((start, end)) = range {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        response.headers_mut().insert(
            header::CONTENT_RANGE,
            header_value(&format!("bytes {start}-{end}/{size}")),
        );
    }
    Ok(response)
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
}

/// `attachment` with an ASCII fallback name and the exact UTF-8 name (RFC 6266 / 5987).
fn content_disposition(filename: &str) -> String {
    let ascii: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = filename
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// What a `Range` header asks for.
#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    /// Bytes `start..=end`.
    Satisfiable(u64, u64),
    /// Not a single byte range we serve (several ranges, other units): answer the whole file.
    Ignored,
    /// A byte range outside the file.
    Unsatisfiable,
    /// A position too large for any file: refused rather than wrapped or ignored.
    OutOfRange,
}

fn parse_range(spec: &str, size: u64) -> RangeRequest {
    let Some(ranges) = spec.trim().strip_prefix("bytes=") else {
        return RangeRequest::Ignored;
    };
    if ranges.contains(',') {
        return RangeRequest::Ignored;
    }
    let Some((first, last)) = ranges.trim().split_once('-') else {
        return RangeRequest::Ignored;
    };
    let (first, last) = (first.trim(), last.trim());
    let too_large = |s: &str| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u64>().is_err()
    };
    if too_large(first) || too_large(last) {
        return RangeRequest::OutOfRange;
    }
    let parse = |s: &str| s.parse::<u64>().ok();
    let range = match (first.is_empty(), last.is_empty()) {
        (true, false) => parse(last)
            .filter(|n| *n > 0)
            .map(|n| (size.saturating_sub(n), size.saturating_sub(1))),
        (false, true) => parse(first).map(|start| (start, size.saturating_sub(1))),
        (false, false) => match (parse(first), parse(last)) {
            (Some(start), Some(end)) if start <= end => {
                Some((start, end.min(size.saturating_sub(1))))
            }
            _ => return RangeRequest::Ignored,
        },
        (true, true) => return RangeRequest::Ignored,
    };
    match range {
        Some((start, end)) if size > 0 && start < size && start <= end => {
            RangeRequest::Satisfiable(start, end)
        }
        Some(_) => RangeRequest::Unsatisfiable,
        None => RangeRequest::Ignored,
    }
}

#[cfg(test)]
mod tests {
    use super::{RangeRequest::*, content_disposition, parse_range};

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-99", 1000), Satisfiable(0, 99));
        assert_eq!(parse_range("bytes=900-", 1000), Satisfiable(900, 999));
        assert_eq!(parse_range("bytes=-100", 1000), Satisfiable(900, 999));
        assert_eq!(parse_range("bytes=990-2000", 1000), Satisfiable(990, 999));
        assert_eq!(parse_range("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), Ignored);
        assert_eq!(parse_range("items=0-1", 1000), Ignored);
        assert_eq!(parse_range("bytes=5-1", 1000), Ignored);
        assert_eq!(parse_range("bytes=0-0", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=18446744073709551616-", 1000), OutOfRange);
        assert_eq!(
            parse_range("bytes=0-99999999999999999999", 1000),
            OutOfRange
        );
        assert_eq!(parse_range("bytes=-18446744073709551616", 1000), OutOfRange);
        assert_eq!(
            parse_range("bytes=0-18446744073709551615", 1000),
            Satisfiable(0, 999)
        );
    }

    #[test]
    fn dispositions_are_safe() {
        assert_eq!(
            content_disposition("a b.txt"),
            "attachment; filename=\"a b.txt\"; filename*=UTF-8''a%20b.txt"
        );
        assert_eq!(
            content_disposition("ç.pdf"),
            "attachment; filename=\"_.pdf\"; filename*=UTF-8''%C3%A7.pdf"
        );
    }
}
