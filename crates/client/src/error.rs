//! The one error type of the client.

use serde::Deserialize;

/// An RFC 7807 problem body, as the server sends it with every error status.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(default, rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    #[serde(default)]
    pub title: String,
    /// The HTTP status code.
    #[serde(default)]
    pub status: u16,
    /// What went wrong with this request.
    #[serde(default)]
    pub detail: String,
    /// The request path.
    #[serde(default)]
    pub instance: String,
}

/// Everything a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error status; `detail` is the problem body's `detail` (or the body's text).
    #[error("HTTP {status}: {detail}")]
    Api {
        /// The HTTP status code.
        status: u16,
        /// The problem's `detail`.
        detail: String,
        /// The whole problem body, when the server sent one.
        problem: Option<Box<Problem>>,
        /// Seconds from a `Retry-After` header (429, 503).
        retry_after: Option<u64>,
    },
    /// The request could not be sent or its answer not read (connection refused, timeout, bad URL…).
    #[error("HTTP transport: {0}")]
    Transport(#[from] reqwest::Error),
    /// The WebSocket failed.
    #[error("WebSocket: {0}")]
    WebSocket(Box<tokio_tungstenite::tungstenite::Error>),
    /// A local file or stream failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// An answer did not have the expected shape.
    #[error("unexpected answer: {0}")]
    Decode(String),
    /// The call needs a token and the client has none.
    #[error("not logged in")]
    NotLoggedIn,
    /// A URL or argument the client cannot use.
    #[error("invalid argument: {0}")]
    Invalid(String),
}

impl From<tokio_tungstenite::tungstenite::Error> for Error {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        use tokio_tungstenite::tungstenite::Error as Ws;
        match e {
            // A refusal before the upgrade is an HTTP answer like any other.
            Ws::Http(response) => {
                let status = response.status().as_u16();
                let body = response.body().as_deref().unwrap_or_default();
                api_error(status, body, None)
            }
            e => Error::WebSocket(Box::new(e)),
        }
    }
}

impl Error {
    /// The HTTP status of an [`Error::Api`] (401 for [`Error::NotLoggedIn`]), else `None`.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            Error::NotLoggedIn => Some(401),
            _ => None,
        }
    }

    /// The problem's `detail` of an [`Error::Api`].
    pub fn detail(&self) -> Option<&str> {
        match self {
            Error::Api { detail, .. } => Some(detail),
            _ => None,
        }
    }

    /// True for a 401 or a missing token: log in again.
    pub fn is_unauthorized(&self) -> bool {
        self.status() == Some(401)
    }

    /// True for a 404.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

/// The error of an error status and its body.
pub(crate) fn api_error(status: u16, body: &[u8], retry_after: Option<u64>) -> Error {
    let problem = serde_json::from_slice::<Problem>(body)
        .ok()
        .filter(|p| !p.detail.is_empty())
        .map(Box::new);
    let detail = match &problem {
        Some(p) => p.detail.clone(),
        None => {
            let text = String::from_utf8_lossy(body).trim().to_owned();
            if text.is_empty() {
                "(no detail)".to_owned()
            } else {
                text.chars().take(500).collect()
            }
        }
    };
    Error::Api {
        status,
        detail,
        problem,
        retry_after,
    }
}

/// A client result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
