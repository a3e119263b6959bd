//! The parts of a multipart upload, read in bounded memory whatever their order or size: file data streams
//! through, small text parts are capped, and the framing (part headers, boundaries, preamble) may not pile up
//! unread beyond a budget — a part header that never ends, or a huge text part, is a 413, not a buffer.

use super::problem::Problem;
use axum::body::{Body, Bytes};
use axum::extract::multipart::{Field, MultipartError};
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::StatusCode;
use futures::TryStreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Bytes received but not yet handed out as part data: room for a few network reads plus part headers.
const UNREAD_BUDGET: u64 = 4 * 1024 * 1024;

/// A multipart body with bounded framing.
pub struct UploadParts {
    multipart: Multipart,
    budget: Arc<Budget>,
}

#[derive(Default)]
struct Budget {
    unread: AtomicU64,
    exceeded: AtomicBool,
}

impl UploadParts {
    /// Reads `request`'s body as multipart/form-data; 400 when it is not.
    pub async fn from_request(request: Request) -> Result<Self, Problem> {
        let budget = Arc::new(Budget::default());
        let (parts, body) = request.into_parts();
        let counted = body.into_data_stream().and_then({
            let budget = budget.clone();
            move |data: Bytes| {
                let len = data.len() as u64;
                let unread = budget.unread.fetch_add(len, Ordering::Relaxed) + len;
                let over = unread > UNREAD_BUDGET;
                budget.exceeded.fetch_or(over, Ordering::Relaxed);
                std::future::ready(if over {
                    Err(axum::Error::new("multipart framing over its budget"))
                } else {
                    Ok(data)
                })
            }
        });
        let request = Request::from_parts(parts, Body::from_stream(counted));
        let multipart = Multipart::from_request(request, &()).await.map_err(|e| {
            Problem::bad_request(format!("invalid multipart body: {}", e.body_text()))
        })?;
        Ok(Self { multipart, budget })
    }

    /// The next part, if any.
    pub async fn next(&mut self) -> Result<Option<UploadPart<'_>>, Problem> {
        let budget = &self.budget;
        match self.multipart.next_field().await {
            Ok(field) => Ok(field.map(|field| UploadPart { field, budget })),
            Err(e) => Err(budget.problem(e)),
        }
    }
}

impl Budget {
    fn problem(&self, error: MultipartError) -> Problem {
        if self.exceeded.load(Ordering::Relaxed) {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "multipart part headers or framing are over {} MiB",
                    UNREAD_BUDGET >> 20
                ),
            )
        } else {
            Problem::bad_request(format!("invalid multipart body: {}", error.body_text()))
        }
    }
}

/// One part of an upload.
pub struct UploadPart<'a> {
    field: Field<'a>,
    budget: &'a Budget,
}

impl UploadPart<'_> {
    /// The part's name (`file`, `conversation_id`).
    pub fn name(&self) -> Option<&str> {
        self.field.name()
    }

    /// The file name the client gave.
    pub fn file_name(&self) -> Option<&str> {
        self.field.file_name()
    }

    /// The part's content type.
    pub fn content_type(&self) -> Option<&str> {
        self.field.content_type()
    }

    /// The next chunk of the part's data.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Problem> {
        match self.field.chunk().await {
            Ok(chunk) => {
                if let Some(chunk) = &chunk {
                    self.budget
                        .unread
                        .fetch_sub(chunk.len() as u64, Ordering::Relaxed);
                }
                Ok(chunk)
            }
            Err(e) => Err(self.budget.problem(e)),
        }
    }

    /// The whole part as UTF-8 text of at most `max_bytes`; 413 beyond, without reading further.
    pub async fn text(mut self, max_bytes: usize) -> Result<String, Problem> {
        let name = self.name().unwrap_or_default().to_owned();
        let mut text = Vec::new();
        while let Some(chunk) = self.chunk().await? {
            if text.len() + chunk.len() > max_bytes {
                return Err(Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the `{name}` part is over {max_bytes} bytes"),
                ));
            }
            text.extend_from_slice(&chunk);
        }
        String::from_utf8(text)
            .map_err(|_| Problem::bad_request(format!("the `{name}` part is not UTF-8 text")))
    }
}
