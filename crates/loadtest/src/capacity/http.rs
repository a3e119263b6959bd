//! The generator's HTTP/1.1 client: keep-alive connections to one server over hyper's connection API, kept in a
//! stack of idle ones. It exists so the generator takes as little of the machine as it can from the server it
//! measures: requests are assembled from parts prepared once (no URL parsing, no header validation, no JSON
//! serialising per request), and there is no pool keyed by host to look up. Plain `http` only (no TLS).
//!
//! A server closes a kept-alive connection after its own idle time, and a request written just as it does is lost
//! (the server never read it, but the client cannot know that). So a connection idle for longer than
//! `IDLE_REUSE_LIMIT` is closed instead of reused, and a request that hyper hands back unwritten because its
//! connection had just closed goes again on a new one, as hyper-util's pooled client does. Any other broken exchange
//! is a failure: the server may have acted on the request.

use super::failures::Failure;
use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Longest a request may take, answer included, before it counts as failed.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Idle connections kept for reuse; past it a finished connection is closed (the generator's own sockets stay
/// bounded after a burst).
const MAX_IDLE: usize = 4_096;

/// Idle time after which a connection is closed rather than reused: below the kept-alive idle time of the servers
/// the generator loads (15 s for Chat4All's default, 5 s for Node's).
const IDLE_REUSE_LIMIT: Duration = Duration::from_secs(2);

/// Connections to one server: its addresses (resolved once), the `Host` header, and the idle connections.
pub struct Client {
    addresses: Vec<SocketAddr>,
    host: HeaderValue,
    /// Last in, first out: each connection sits above every one idle for longer.
    idle: Mutex<Vec<(SendRequest<Full<Bytes>>, Instant)>>,
    idle_reuse_limit: Duration,
    resent: AtomicU64,
}

/// Why a request got no answer: its kind, for counting, and the cause, for a message.
#[derive(Debug)]
pub struct SendError {
    /// What kind of failure it was.
    pub kind: Failure,
    cause: anyhow::Error,
}

impl SendError {
    fn new(kind: Failure, cause: impl Into<anyhow::Error>) -> Self {
        Self {
            kind,
            cause: cause.into(),
        }
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.cause)
    }
}

impl std::error::Error for SendError {}

/// A request's parts, prepared once and sent many times, by any user (the token goes with each send).
#[derive(Clone)]
pub struct Prepared {
    method: Method,
    path: Uri,
    body: Option<Bytes>,
}

impl Prepared {
    /// A `GET` of `path`.
    pub fn get(path: &str) -> anyhow::Result<Self> {
        Ok(Self {
            method: Method::GET,
            path: origin_form(path)?,
            body: None,
        })
    }

    /// A `POST` of the JSON `body` to `path`.
    pub fn post_json(path: &str, body: &serde_json::Value) -> anyhow::Result<Self> {
        Ok(Self {
            method: Method::POST,
            path: origin_form(path)?,
            body: Some(Bytes::from(serde_json::to_vec(body)?)),
        })
    }
}

/// `Authorization`'s value for a bearer token, built once per token.
pub fn bearer_value(token: &str) -> anyhow::Result<HeaderValue> {
    let mut value = HeaderValue::try_from(format!("Bearer {token}"))
        .context("the access token is not a valid header value")?;
    value.set_sensitive(true);
    Ok(value)
}

fn origin_form(path: &str) -> anyhow::Result<Uri> {
    anyhow::ensure!(
        path.starts_with('/'),
        "a request path starts with /: {path}"
    );
    path.parse()
        .with_context(|| format!("invalid request path {path}"))
}

impl Client {
    /// A client of the server at `url` (`http://host:port`, no path).
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let uri: Uri = url.parse().with_context(|| format!("invalid URL {url}"))?;
        anyhow::ensure!(
            uri.scheme_str() == Some("http"),
            "the generator speaks plain http; {url} is not an http:// URL"
        );
        let authority = uri
            .authority()
            .with_context(|| format!("no host in {url}"))?;
        let host = authority.host().trim_matches(['[', ']']);
        let addresses: Vec<SocketAddr> = (host, authority.port_u16().unwrap_or(80))
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {host}"))?
            .collect();
        anyhow::ensure!(!addresses.is_empty(), "{host} has no address");
        Ok(Self {
            host: HeaderValue::from_str(authority.as_str())?,
            addresses,
            idle: Mutex::default(),
            idle_reuse_limit: IDLE_REUSE_LIMIT,
            resent: AtomicU64::new(0),
        })
    }

    /// Closes rather than reuses a connection idle for longer than `limit` (2 s unless set).
    pub fn idle_reuse_limit(mut self, limit: Duration) -> Self {
        self.idle_reuse_limit = limit;
        self
    }

    /// Requests sent again on a new connection because the idle one they were given had just been closed by the
    /// server, since this client was made.
    pub fn resent(&self) -> u64 {
        self.resent.load(Ordering::Relaxed)
    }

    /// Sends `request` (with `Authorization: token` when given) on an idle connection or a new one; returns the
    /// status and the whole body.
    pub async fn send(
        &self,
        request: &Prepared,
        token: Option<&HeaderValue>,
    ) -> Result<(StatusCode, Bytes), SendError> {
        tokio::time::timeout(TIMEOUT, self.exchange(request, token))
            .await
            .unwrap_or_else(|_| {
                Err(SendError::new(
                    Failure::Timeout,
                    anyhow::anyhow!("no answer within {TIMEOUT:?}"),
                ))
            })
    }

    /// Sends `request` and returns the answer's body; a status other than a success is an error naming `doing`.
    pub async fn succeed(&self, request: &Prepared, doing: &str) -> anyhow::Result<Bytes> {
        let (status, body) = self
            .send(request, None)
            .await
            .with_context(|| format!("{doing}: no answer"))?;
        anyhow::ensure!(
            status.is_success(),
            "{doing}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        Ok(body)
    }

    async fn exchange(
        &self,
        prepared: &Prepared,
        token: Option<&HeaderValue>,
    ) -> Result<(StatusCode, Bytes), SendError> {
        let mut request = Request::new(Full::new(prepared.body.clone().unwrap_or_default()));
        *request.method_mut() = prepared.method.clone();
        *request.uri_mut() = prepared.path.clone();
        let headers = request.headers_mut();
        headers.insert(HOST, self.host.clone());
        if let Some(token) = token {
            headers.insert(AUTHORIZATION, token.clone());
        }
        if prepared.body.is_some() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let (mut connection, reused) = match self.idle_connection().await {
            Some(idle) => (idle, true),
            None => (self.dial().await?, false),
        };
        let broken = |e: hyper::Error| SendError::new(Failure::Broken, e);
        let response = match connection.try_send_request(request).await {
            Ok(response) => response,
            Err(mut unsent) => match unsent.take_message() {
                Some(request) if reused => {
                    self.resent.fetch_add(1, Ordering::Relaxed);
                    connection = self.dial().await?;
                    connection.send_request(request).await.map_err(broken)?
                }
                _ => return Err(broken(unsent.into_error())),
            },
        };
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(broken)?
            .to_bytes();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((connection, Instant::now()));
        }
        Ok((status, body))
    }

    /// An idle connection that can take a request, if there is one.
    async fn idle_connection(&self) -> Option<SendRequest<Full<Bytes>>> {
        loop {
            let mut connection = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                let (connection, since) = idle.pop()?;
                if since.elapsed() > self.idle_reuse_limit {
                    // The server may be closing it; those below have been idle longer still.
                    idle.clear();
                    return None;
                }
                connection
            };
            // Ready at once unless the server closed it (then it is dropped) or its last answer is still being
            // wound up by its task.
            if connection.ready().await.is_ok() {
                return Some(connection);
            }
        }
    }

    /// A new connection.
    async fn dial(&self) -> Result<SendRequest<Full<Bytes>>, SendError> {
        let connect = async {
            let stream = TcpStream::connect(&self.addresses[..])
                .await
                .with_context(|| format!("connect to {:?}", self.addresses))?;
            stream.set_nodelay(true).context("TCP_NODELAY")?;
            http1::handshake(TokioIo::new(stream))
                .await
                .context("HTTP handshake")
        };
        let (sender, connection) = connect
            .await
            .map_err(|e| SendError::new(Failure::Connect, e))?;
        tokio::spawn(async move {
            // Ends when the server closes or the last sender is dropped; either way the next request dials anew.
            let _ = connection.await;
        });
        Ok(sender)
    }
}
