//! `GET /v1/files/{id}/download` and `/v1/files/{id}/content`: time-limited signed links, and the file's bytes
//! for a member's token or a valid signature, whole or one `Range` (parsed in `ranges`), with safe headers.

use super::extract::{ApiQuery, AuthUser, bearer_user};
use super::problem::{ApiResult, Problem};
use super::ranges::{RangeRequest, parse_range};
use super::schema::{Binary, Id};
use super::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chat4all_core::services::files::DownloadAccess;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

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

#[cfg(test)]
mod tests {
    use super::content_disposition;

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
