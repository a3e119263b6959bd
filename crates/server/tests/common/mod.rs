//! Starts the real server on port 0 with a temporary data directory, and talks HTTP to it.
#![allow(dead_code, missing_docs)]

use chat4all_connectors::simulated::LatencyRange;
use chat4all_core::ports::{EventLog, PartitionConsumer, Record, Tail};
use chat4all_server::{Application, Config};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub log: Arc<dyn EventLog>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// A configuration whose simulated channels answer in a few milliseconds.
pub fn test_config(data_dir: &Path) -> Config {
    let mut config = Config::for_data_dir(data_dir);
    for channel in config.channels.values_mut() {
        channel.latency_ms = LatencyRange {
            min_ms: 1,
            max_ms: 5,
        };
    }
    config.auth.jwt_secret = Some("test-secret-test-secret-test-secret!".into());
    config.auth.admin_token = Some(ADMIN_TOKEN.into());
    // Fail fast and recover fast, so that outages play out in a second or two.
    config.delivery.breaker_cool_down = Duration::from_millis(500);
    config.delivery.retry_base = Duration::from_millis(20);
    config.delivery.retry_max = Duration::from_millis(200);
    config.delivery.max_attempts = 1000;
    config
}

/// The admin token of test servers.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

pub async fn spawn_app(data_dir: &Path) -> TestApp {
    spawn_with(test_config(data_dir)).await
}

/// A server on a fresh data directory with `edit` applied to the test configuration; keep the directory alive.
pub async fn spawn_edited(edit: impl FnOnce(&mut Config)) -> (tempfile::TempDir, TestApp) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    edit(&mut config);
    let app = spawn_with(config).await;
    (dir, app)
}

pub async fn spawn_with(config: Config) -> TestApp {
    let app = Application::build(config, chat4all_server::Role::All)
        .await
        .expect("the app builds");
    let (addr, log) = (app.local_addr(), app.event_log());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    TestApp {
        addr,
        client: reqwest::Client::new(),
        log,
        stop: Some(stop),
        task: Some(task),
    }
}

pub struct Reply {
    pub status: u16,
    pub text: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Graceful shutdown, as on SIGTERM; fails the test if it is not clean.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("shutdown within 10 s")
            .unwrap()
            .unwrap();
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        Reply {
            status,
            text: response.text().await.unwrap(),
            headers,
        }
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.request(
            reqwest::Method::POST,
            path,
            token,
            Some(&body.to_string()),
            &[],
        )
        .await
    }

    /// An admin call.
    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Reply {
        let body = body.map(Value::to_string);
        self.request(method, path, Some(ADMIN_TOKEN), body.as_deref(), &[])
            .await
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.request(reqwest::Method::GET, path, Some(token), None, &[])
            .await
    }

    /// Registers `name` and logs in: (user_id, token).
    pub async fn user(&self, name: &str) -> (String, String) {
        let password = format!("{name}-password");
        let created = self
            .post(
                "/auth/register",
                None,
                &json!({"username": name, "password": password}),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        let token = self
            .post(
                "/auth/token",
                None,
                &json!({"username": name, "password": password}),
            )
            .await;
        assert_eq!(token.status, 200, "{}", token.text);
        let token = token.json();
        (
            token["user_id"].as_str().unwrap().to_owned(),
            token["access_token"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn send(&self, token: &str, body: Value) -> Reply {
        self.post("/v1/messages", Some(token), &body).await
    }

    pub async fn history(&self, token: &str, conversation: &str, query: &str) -> Reply {
        self.get(
            &format!("/v1/conversations/{conversation}/messages?{query}"),
            token,
        )
        .await
    }

    /// Polls `conversation`'s first 100 messages until `done` holds for them, or fails after 10 s.
    pub async fn wait_for_history(
        &self,
        token: &str,
        conversation: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        self.wait_for_page(token, conversation, "limit=100", done)
            .await
    }

    /// Polls a page of `conversation`'s history (`query`) until `done` holds for it, or fails after 10 s.
    pub async fn wait_for_page(
        &self,
        token: &str,
        conversation: &str,
        query: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let page = self.history(token, conversation, query).await.json();
            let messages = page["messages"].as_array().cloned().unwrap_or_default();
            if done(&messages) {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "history never reached the expected state: {messages:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl TestApp {
    /// Polls `/metrics` until the series that starts with `series` reaches `at_least`, or fails after 10 s.
    pub async fn wait_for_metric(&self, series: &str, at_least: f64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let metrics = self
                .request(reqwest::Method::GET, "/metrics", None, None, &[])
                .await
                .text;
            let value = metrics
                .lines()
                .find_map(|line| line.strip_prefix(series))
                .and_then(|rest| rest.trim().parse::<f64>().ok());
            if value.is_some_and(|v| v >= at_least) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{series} never reached {at_least}: {value:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The statuses of a message's history, oldest first (`GET /v1/messages/{id}` body).
pub fn history_steps(detail: &Value) -> Vec<&str> {
    detail["status_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect()
}

pub fn all_have_status(messages: &[Value], count: usize, status: &str) -> bool {
    messages.len() == count && messages.iter().all(|m| m["status"] == status)
}

/// `len` pseudo-random bytes, the same for the same `seed`.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `POST /v1/files` of `data` as `name` into `conversation`, the file part first or last.
pub async fn upload(
    app: &TestApp,
    token: &str,
    conversation: &str,
    name: &str,
    data: &[u8],
    file_first: bool,
) -> reqwest::Response {
    let file = Part::bytes(data.to_vec())
        .file_name(name.to_owned())
        .mime_str("application/octet-stream")
        .unwrap();
    let form = if file_first {
        Form::new()
            .part("file", file)
            .text("conversation_id", conversation.to_owned())
    } else {
        Form::new()
            .text("conversation_id", conversation.to_owned())
            .part("file", file)
    };
    app.client
        .post(app.url("/v1/files"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

/// A GET with an optional bearer token and `Range`: (status, headers, body).
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    range: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(range) = range {
        request = request.header("range", range);
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.headers().clone(),
        response.bytes().await.unwrap().to_vec(),
    )
}

/// Visible objects: every file under `objects/` outside the staging folders.
pub fn visible_objects(data_dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == ".staging" || name == ".uploads" {
                continue;
            }
            if path.is_dir() {
                walk(&path, out)
            } else {
                out.push(path.display().to_string())
            }
        }
    }
    let mut out = Vec::new();
    walk(&data_dir.join("objects"), &mut out);
    out
}

/// Whether no upload is being staged.
pub fn staging_is_empty(data_dir: &Path) -> bool {
    std::fs::read_dir(data_dir.join("objects/.staging"))
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}

/// Every record a consumer can read now.
pub async fn drain(consumer: &mut Box<dyn PartitionConsumer>) -> Vec<Record> {
    let mut all = Vec::new();
    loop {
        let records = consumer
            .poll(1000, Duration::from_millis(10))
            .await
            .unwrap();
        if records.is_empty() {
            return all;
        }
        all.extend(records);
    }
}

/// Every record of `topic`, partition by partition.
pub async fn read_topic(log: &dyn EventLog, topic: &str) -> Vec<Record> {
    let mut all = Vec::new();
    for partition in 0..log.partition_count() {
        all.extend(drain(&mut log.consumer("test-reader", topic, partition).await.unwrap()).await);
    }
    all
}

/// Every record a tail holds now (a live topic's tail still reads after its server stopped).
pub async fn drain_tail(tail: &mut Box<dyn Tail>) -> Vec<Record> {
    let mut all = Vec::new();
    loop {
        let batch = tail.poll(10_000, Duration::ZERO).await.unwrap();
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}
