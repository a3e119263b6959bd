//! The open-model scheduler against a deliberately slow fake server: one request at a time, 20 ms each (50/s at
//! most). Offered less than that, latency stays near 20 ms; offered more, the queue must show in the latency
//! measured from the scheduled send time (a closed-model generator would hide it by slowing down).

use chat4all_loadtest::capacity::{
    CapacityOptions, Client, Failure, Prepared, Target, check_target, ramp, run_step,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Reads a request's head; false when the client went away first.
async fn read_head(socket: &mut TcpStream) -> bool {
    let mut request = Vec::new();
    let mut buffer = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buffer).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    }
    true
}

/// Answers 200 "ok" and closes.
async fn answer_ok(socket: &mut TcpStream) {
    let _ = socket
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        .await;
}

async fn slow_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            read_head(&mut socket).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            answer_ok(&mut socket).await;
        }
    });
    format!("http://{addr}")
}

/// A fake server whose first `cold` requests take 300 ms and the rest none, as a server's first sends to new
/// conversations over new connections do.
async fn cold_server(cold: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let served = served.clone();
            tokio::spawn(async move {
                if !read_head(&mut socket).await {
                    return;
                }
                if served.fetch_add(1, Ordering::SeqCst) < cold {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                answer_ok(&mut socket).await;
            });
        }
    });
    format!("http://{addr}")
}

/// A server that hands each connection to `serve`; returns its URL and how many connections it accepted.
async fn counting_server<F, Serving>(serve: F) -> (String, Arc<AtomicUsize>)
where
    F: Fn(TcpStream) -> Serving + Send + 'static,
    Serving: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(socket));
        }
    });
    (format!("http://{addr}"), accepted)
}

/// A server that keeps its connections open and answers each request at once.
async fn keep_alive_server() -> (String, Arc<AtomicUsize>) {
    counting_server(|mut socket| async move {
        while read_head(&mut socket).await {
            let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            if socket.write_all(answer).await.is_err() {
                return;
            }
        }
    })
    .await
}

/// A server that answers a connection's first request with `answer` (or nothing, when `None`), then closes it
/// without saying so in the answer.
async fn closing_server(answer: Option<&'static [u8]>) -> String {
    let (url, _) = counting_server(move |mut socket| async move {
        if read_head(&mut socket).await
            && let Some(answer) = answer
        {
            let _ = socket.write_all(answer).await;
        }
    })
    .await;
    url
}

fn client(url: &str) -> Arc<Client> {
    Arc::new(Client::new(url).unwrap())
}

fn get_root() -> Target {
    Target::Get(Prepared::get("/").unwrap())
}

fn one_step(url: String, warmup_secs: u64) -> CapacityOptions {
    CapacityOptions {
        url,
        start_rate: 40,
        step_rate: 40,
        steps: None,
        step_secs: 1,
        warmup_secs,
        max_rate: 40,
        slo_p99_ms: 10_000.0,
        max_error_rate: 0.01,
        users: 1,
        e2e_sample_every: 0,
        allow_remote: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_warm_up_is_not_counted() {
    let target = get_root();
    let url = cold_server(10).await;
    let cold = ramp(&client(&url), &one_step(url, 0), &target, "cold").await;
    assert!(
        cold[0].p99_ms >= 300.0,
        "from a cold start the slow first requests count: {cold:?}"
    );

    let url = cold_server(10).await;
    let warm = ramp(&client(&url), &one_step(url, 1), &target, "warm").await;
    assert_eq!(warm.len(), 1, "the warm-up is not a step: {warm:?}");
    assert_eq!((warm[0].sent, warm[0].failures.total()), (40, 0));
    assert!(
        warm[0].p99_ms < 250.0,
        "the warm-up took the slow requests: {warm:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_rate_of_zero_holds_the_rate_for_the_steps_asked() {
    let (url, _) = keep_alive_server().await;
    let soak = CapacityOptions {
        step_rate: 0,
        steps: Some(3),
        max_rate: 1_000,
        ..one_step(url.clone(), 0)
    };
    let steps = ramp(&client(&url), &soak, &get_root(), "soak").await;
    let rates: Vec<(u32, u64)> = steps.iter().map(|s| (s.rate, s.sent)).collect();
    assert_eq!(rates, [(40, 40); 3], "{steps:?}");

    let unbounded = CapacityOptions {
        steps: None,
        ..soak
    };
    let steps = ramp(&client(&url), &unbounded, &get_root(), "soak").await;
    assert_eq!(
        steps.len(),
        1,
        "a constant rate without a step count runs once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queueing_shows_in_the_measured_latency() {
    let client = client(&slow_server().await);
    let target = get_root();
    let calm = run_step(&client, &target, 20, Duration::from_secs(1), 0, None).await;
    assert_eq!((calm.sent, calm.failures.total()), (20, 0));
    assert!(
        calm.p99_ms < 150.0,
        "under capacity the latency stays near the service time: {calm:?}"
    );

    let overload = run_step(&client, &target, 100, Duration::from_secs(1), 0, None).await;
    assert_eq!((overload.sent, overload.failures.total()), (100, 0));
    // 100 requests at 20 ms each need 2 s; the last, scheduled at 0.99 s, waits about a second.
    assert!(
        overload.p99_ms > 500.0,
        "the queue must show from the scheduled time: {overload:?}"
    );
    assert!(
        overload.p50_ms > calm.p50_ms * 3.0,
        "{overload:?} vs {calm:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_kept_alive_and_reused() {
    let (url, accepted) = keep_alive_server().await;
    // 40 requests 25 ms apart, each answered at once: one connection carries them all.
    let step = run_step(
        &client(&url),
        &get_root(),
        40,
        Duration::from_secs(1),
        0,
        None,
    )
    .await;
    assert_eq!((step.sent, step.failures.total()), (40, 0));
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "a connection per request is what this client avoids"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_idle_past_the_limit_is_not_reused() {
    let (url, accepted) = keep_alive_server().await;
    let client = Client::new(&url)
        .unwrap()
        .idle_reuse_limit(Duration::from_millis(100));
    let root = Prepared::get("/").unwrap();
    client.succeed(&root, "first").await.unwrap();
    client.succeed(&root, "at once").await.unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(300)).await; // the idle time under test, not a wait for an event
    client.succeed(&root, "after the limit").await.unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_counted_by_kind() {
    let count = async |url: &str| {
        let step = run_step(
            &client(url),
            &get_root(),
            20,
            Duration::from_secs(1),
            0,
            None,
        )
        .await;
        assert_eq!(step.sent, 20);
        step.failures
    };
    let unanswered = closing_server(None).await;
    assert_eq!(count(&unanswered).await.of(Failure::Broken), 20);
    let unavailable = closing_server(Some(
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
    ))
    .await;
    assert_eq!(count(&unavailable).await.of(Failure::ServerStatus), 20);
    let missing =
        closing_server(Some(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")).await;
    let failures = count(&missing).await;
    assert_eq!(failures.of(Failure::ClientStatus), 20);
    assert_eq!(failures.to_string(), "20 answered 4xx");
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    assert_eq!(count(&closed_port).await.of(Failure::Connect), 20);
}

#[test]
fn only_http_urls_with_a_host_make_a_client() {
    assert!(Client::new("http://127.0.0.1:8080").is_ok());
    assert!(Client::new("http://localhost").is_ok());
    let https = Client::new("https://127.0.0.1:8443").err().unwrap();
    assert!(https.to_string().contains("plain http"), "{https}");
    assert!(Client::new("127.0.0.1:8080").is_err());
    assert!(Prepared::get("health/live").is_err());
}

#[test]
fn only_loopback_targets_unless_allowed() {
    assert!(check_target("http://127.0.0.1:8080", false).is_ok());
    assert!(check_target("http://localhost:8080", false).is_ok());
    assert!(check_target("http://[::1]:8080", false).is_ok());
    assert!(check_target("http://10.0.0.5:8080", false).is_err());
    assert!(check_target("http://example.com", false).is_err());
    assert!(check_target("http://example.com", true).is_ok());
    assert!(check_target("not a url", true).is_err());
}
