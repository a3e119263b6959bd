//! Chat4All client: a typed async client of the HTTP + WebSocket API (see `docs/api.md`), and the
//! `chat4all client` command line built on it.
//!
//! ```no_run
//! # async fn demo() -> chat4all_client::Result<()> {
//! use chat4all_client::{Client, NewMessage};
//! let client = Client::new("http://127.0.0.1:8080")?;
//! client.login("alice", "correct horse battery").await?;
//! let accepted = client.send_message(&NewMessage::text("team", "hello")).await?;
//! let page = client.history("team", &Default::default()).await?;
//! # let _ = (accepted, page); Ok(()) }
//! ```

mod api;
pub mod cli;
mod error;
mod files;
pub mod realtime;
mod types;

pub use error::{Error, Problem, Result};
pub use files::DEFAULT_CHUNK_BYTES;
pub use realtime::{Event, ServerFrame, Socket, StatusUpdate, Watch, WatchOptions};
pub use types::*;

use reqwest::{Method, RequestBuilder, Response, Url};
use serde::de::DeserializeOwned;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// A Chat4All API client. Cheap to clone: clones share the connection pool and the token.
#[derive(Clone, Debug)]
pub struct Client {
    base: Url,
    http: reqwest::Client,
    token: Arc<RwLock<Option<String>>>,
}

impl Client {
    /// A client of the server at `base_url` (`http://host:port`, optionally with a path prefix), without a token.
    pub fn new(base_url: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Self::with_http(base_url, http)
    }

    /// A client using a caller-configured `reqwest::Client` (timeouts, proxies…).
    pub fn with_http(base_url: &str, http: reqwest::Client) -> Result<Self> {
        let trimmed = base_url.trim().trim_end_matches('/');
        let base = Url::parse(&format!("{trimmed}/"))
            .map_err(|e| Error::Invalid(format!("URL {base_url:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(Error::Invalid(format!(
                "URL {base_url:?}: the scheme must be http or https"
            )));
        }
        Ok(Self {
            base,
            http,
            token: Arc::new(RwLock::new(None)),
        })
    }

    /// The same client with this bearer token.
    pub fn with_token(self, token: impl Into<String>) -> Self {
        self.set_token(Some(token.into()));
        self
    }

    /// The server's base URL (with a trailing `/`).
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The bearer token in use, if any.
    pub fn token(&self) -> Option<String> {
        self.token.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces (or clears) the bearer token, for this client and its clones.
    pub fn set_token(&self, token: Option<String>) {
        *self.token.write().unwrap_or_else(|e| e.into_inner()) = token;
    }

    /// The absolute URL of an API path such as `/v1/messages`.
    pub(crate) fn url(&self, path: &str) -> Result<Url> {
        self.base
            .join(path.trim_start_matches('/'))
            .map_err(|e| Error::Invalid(format!("path {path:?}: {e}")))
    }

    /// A request without a token.
    pub(crate) fn public(&self, method: Method, path: &str) -> Result<RequestBuilder> {
        Ok(self.http.request(method, self.url(path)?))
    }

    /// A request with the bearer token; [`Error::NotLoggedIn`] without one.
    pub(crate) fn authed(&self, method: Method, path: &str) -> Result<RequestBuilder> {
        let token = self.token().ok_or(Error::NotLoggedIn)?;
        Ok(self.public(method, path)?.bearer_auth(token))
    }

    /// Sends a request; an error status becomes [`Error::Api`].
    pub(crate) async fn execute(&self, request: RequestBuilder) -> Result<Response> {
        let response = request.send().await?;
        check(response).await
    }

    /// Sends a request and decodes its JSON answer.
    pub(crate) async fn json<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T> {
        let response = self.execute(request).await?;
        let body = response.bytes().await?;
        serde_json::from_slice(&body).map_err(|e| {
            Error::Decode(format!(
                "{e}: {}",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(300)
                    .collect::<String>()
            ))
        })
    }
}

/// The response when its status is a success, else its [`Error::Api`].
pub(crate) async fn check(response: Response) -> Result<Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let body = response.bytes().await.unwrap_or_default();
    Err(error::api_error(status.as_u16(), &body, retry_after))
}

/// A path segment, percent-encoded: only unreserved characters are kept as they are.
pub(crate) fn segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("+55 11/x"), "%2B55%2011%2Fx");
        assert_eq!(segment("@handle"), "%40handle");
    }

    #[test]
    fn base_urls_keep_their_prefix() {
        let client = Client::new("http://h:1/api").unwrap();
        assert_eq!(
            client.url("/v1/ws").unwrap().as_str(),
            "http://h:1/api/v1/ws"
        );
        assert!(Client::new("ftp://h").is_err());
    }

    #[test]
    fn problems_give_their_detail() {
        let e = error::api_error(
            404,
            br#"{"type":"about:blank","title":"Not Found","status":404,"detail":"no such message","instance":"/x","error":"no such message"}"#,
            None,
        );
        assert_eq!(e.status(), Some(404));
        assert_eq!(e.detail(), Some("no such message"));
        assert_eq!(
            error::api_error(502, b"bad gateway", None).detail(),
            Some("bad gateway")
        );
    }
}
