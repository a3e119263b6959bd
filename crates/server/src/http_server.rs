//! The HTTP/1.1 server loop. Unlike `axum::serve`, it bounds what a client can hold: a cap on open connections
//! (past it a connection gets an immediate 503 and is closed), a time limit to receive a request's headers, and
//! an idle time after which a kept-alive connection is closed (request bodies are bounded by the api's routes).
//! Each request carries its client's address (`ConnectInfo`), and shutdown drains the open connections.

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// What one client may hold of the server.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Time to receive a request's headers, counted from when the connection waits for them.
    pub header_read_timeout: Duration,
    /// How long a kept-alive connection may stay idle between requests.
    pub keep_alive_timeout: Duration,
}

/// The answer to a connection over the cap, written without reading the request.
static OVER_CAPACITY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let body = r#"{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"too many connections; retry shortly","instance":"/","error":"too many connections; retry shortly"}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
});

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets open connections finish their
/// current request and returns once they are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors or memory: back off instead of spinning, the cap normally prevents it.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!("http_connections_rejected_total", "service" => "api").increment(1);
            let _ = stream.try_write(&OVER_CAPACITY);
            continue;
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(serve_connection(
            stream,
            remote,
            router.clone(),
            limits,
            shutdown.clone(),
            slot,
        ));
    }
    connections.close();
    connections.wait().await;
}

async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let _open = OpenConnection::count();
    let activity = Arc::new(Activity::new());
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let busy = activity.begin();
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(remote));
            let response = router.clone().oneshot(request);
            async move {
                let response = response.await;
                drop(busy);
                response
            }
        })
    };
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, client = %remote, "connection ended with an error");
                }
                return;
            }
            () = activity.idle_for(limits.keep_alive_timeout), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            () = shutdown.cancelled(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// Registers the connection series at zero.
pub fn register_metrics() {
    metrics::counter!("http_connections_rejected_total", "service" => "api").absolute(0);
    metrics::gauge!("http_connections_open", "service" => "api").increment(0.0);
}

/// The `http_connections_open` gauge, up while this value lives.
struct OpenConnection;

impl OpenConnection {
    fn count() -> Self {
        metrics::gauge!("http_connections_open", "service" => "api").increment(1.0);
        Self
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!("http_connections_open", "service" => "api").decrement(1.0);
    }
}

/// Requests in flight on one connection and when the last one ended, to tell when it has been idle too long.
/// Plain atomics: a request costs two counter updates and a clock read, and nothing wakes the connection's task.
struct Activity {
    opened: Instant,
    in_flight: AtomicU32,
    /// When the last request ended, in ms since `opened`; `u64::MAX` before the first (the header timeout covers
    /// that wait).
    last_done_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicU32::new(0),
            last_done_ms: AtomicU64::new(u64::MAX),
        }
    }

    /// Marks a request in flight until the returned guard drops.
    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// Resolves once no request has been in flight for `timeout` since the last one ended. Sleeps until the
    /// earliest moment that could be true, and checks again then.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let last_done = self.last_done_ms.load(Ordering::Relaxed);
            let idle_since = if last_done == u64::MAX || self.in_flight.load(Ordering::Relaxed) > 0
            {
                Instant::now()
            } else {
                self.opened + Duration::from_millis(last_done)
            };
            let deadline = idle_since + timeout;
            if deadline <= Instant::now() {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A request in flight on a connection.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let activity = &self.0;
        let now_ms = activity.opened.elapsed().as_millis() as u64;
        activity.last_done_ms.store(now_ms, Ordering::Relaxed);
        activity.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
