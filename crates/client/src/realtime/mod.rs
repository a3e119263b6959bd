//! The real-time stream: `GET /v1/ws`, typed frames, reconnection with backoff, and catch-up from history.
//!
//! The catch-up follows `docs/api.md`: open the socket (and wait for its `connected` frame), then for each of the
//! user's conversations page history after the last `seq` seen, then apply the socket's frames whose `seq` is above
//! the last one history gave. Every message is delivered once, across reconnections and server restarts.

mod runner;
mod socket;
mod statuses;

pub use socket::Socket;

use crate::types::{Message, MessageStatus};
use crate::{Client, Error, Result};
use runner::Runner;
use serde::{Deserialize, Serialize};
use statuses::Statuses;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// A `status_update` frame: a status change applied to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdate {
    /// The message.
    pub message_id: String,
    /// Its conversation.
    pub conversation_id: String,
    /// Its position in the conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The status reached.
    pub status: MessageStatus,
    /// When (ms).
    pub at: i64,
    /// Why or how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A frame the server sends on the WebSocket.
// Frames are short-lived; boxing the message would only make matching on them clumsier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// First frame: the socket is registered for this user.
    Connected {
        /// The user.
        user_id: String,
    },
    /// A message entered one of the user's conversations.
    NewMessage(Message),
    /// A status change was applied.
    StatusUpdate(StatusUpdate),
    /// Answer to a `{"type":"ping"}`.
    Pong,
    /// A frame type this client does not know.
    #[serde(other)]
    Unknown,
}

/// What a [`Watch`] yields.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The socket is open (again).
    Connected {
        /// The user.
        user_id: String,
        /// False the first time.
        reconnected: bool,
    },
    /// A message, each exactly once.
    Message {
        /// The message (from a frame its status is `SENT`; from history, its current status).
        message: Message,
        /// It came from history while catching up after a reconnection.
        caught_up: bool,
    },
    /// A status change, each once; for the last 10,000 messages the watch delivered, the latest status reached
    /// while disconnected is caught up from history (intermediate steps are not replayed).
    Status(StatusUpdate),
    /// The socket was lost; the watch reconnects after `retry_in`.
    Disconnected {
        /// Why.
        reason: String,
        /// The wait before the next attempt.
        retry_in: Duration,
    },
}

/// How a [`Watch`] behaves.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The last `seq` already seen per conversation, to resume from (an earlier [`Watch::last_seen`]); the
    /// messages after these are delivered first. Other conversations start from now.
    pub resume_from: HashMap<String, u64>,
    /// A `{"type":"ping"}` is sent this often.
    pub ping_interval: Duration,
    /// The socket is given up and reopened after this long without any frame.
    pub idle_timeout: Duration,
    /// First reconnection delay; it doubles up to `max_backoff`, and starts over after a good connection.
    pub min_backoff: Duration,
    /// Longest reconnection delay.
    pub max_backoff: Duration,
    /// Catch up from history after a reconnection (the documented order). Off: live frames only.
    pub catch_up: bool,
    /// History page size while catching up (1..100).
    pub page_size: u32,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            resume_from: HashMap::new(),
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            catch_up: true,
            page_size: 100,
        }
    }
}

/// A live, self-reconnecting stream of [`Event`]s. Dropping it closes the socket.
#[derive(Debug)]
pub struct Watch {
    events: mpsc::Receiver<Result<Event>>,
    last_seen: Arc<Mutex<HashMap<String, u64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watch {
    /// The next event; `None` after a fatal error was yielded (401, 403: reconnecting would not help).
    pub async fn next(&mut self) -> Option<Result<Event>> {
        self.events.recv().await
    }

    /// The last `seq` delivered per conversation: pass it as [`WatchOptions::resume_from`] to resume later.
    pub fn last_seen(&self) -> HashMap<String, u64> {
        lock(&self.last_seen).clone()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Client {
    /// Opens the real-time stream (`GET /v1/ws` with the client's token), reconnecting and catching up as
    /// `docs/api.md` describes. Returns once the first socket is open, or with its error (401 for a bad token).
    pub async fn watch(&self, options: WatchOptions) -> Result<Watch> {
        self.token().ok_or(Error::NotLoggedIn)?;
        let (tx, events) = mpsc::channel(1024);
        let last_seen = Arc::new(Mutex::new(options.resume_from.clone()));
        let (opened_tx, opened) = tokio::sync::oneshot::channel();
        let runner = Runner {
            client: self.clone(),
            options,
            tx,
            last_seen: last_seen.clone(),
            statuses: Mutex::new(Statuses::default()),
        };
        let task = tokio::spawn(runner.run(opened_tx));
        match opened.await {
            Ok(Ok(())) => Ok(Watch {
                events,
                last_seen,
                task,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Decode("the stream stopped before connecting".into())),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_decode() {
        let frame: ServerFrame =
            serde_json::from_str(r#"{"type":"connected","user_id":"u1"}"#).unwrap();
        assert_eq!(
            frame,
            ServerFrame::Connected {
                user_id: "u1".into()
            }
        );
        let frame: ServerFrame = serde_json::from_str(
            r#"{"type":"new_message","message_id":"m","conversation_id":"c","seq":3,"sender_id":"u","content":"hi","status":"SENT","timestamp":1}"#,
        )
        .unwrap();
        assert!(matches!(frame, ServerFrame::NewMessage(m) if m.seq == 3));
        let frame: ServerFrame = serde_json::from_str(
            r#"{"type":"status_update","message_id":"m","conversation_id":"c","seq":3,"status":"READ","at":2}"#,
        )
        .unwrap();
        assert!(matches!(frame, ServerFrame::StatusUpdate(u) if u.status == MessageStatus::Read));
        let frame: ServerFrame = serde_json::from_str(r#"{"type":"pong"}"#).unwrap();
        assert_eq!(frame, ServerFrame::Pong);
        let frame: ServerFrame = serde_json::from_str(r#"{"type":"typing","who":"x"}"#).unwrap();
        assert_eq!(frame, ServerFrame::Unknown);
    }
}
