//! The real-time stream: `GET /v1/ws`, typed frames, reconnection with backoff, and catch-up from history.
//!
//! The catch-up follows `docs/api.md`: open the socket (and wait for its `connected` frame), then for each of the
//! user's conversations page history after the last `seq` seen, then apply the socket's frames whose `seq` is above
//! the last one history gave. Every message is delivered once, across reconnections and server restarts.

use crate::types::{HistoryQuery, Message, MessageStatus, Order};
use crate::{Client, Error, Result};
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

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

    /// Opens one raw socket (no reconnection, no catch-up): frames as the server sends them.
    pub async fn connect_ws(&self) -> Result<Socket> {
        let token = self.token().ok_or(Error::NotLoggedIn)?;
        let mut url = self.url("/v1/ws")?;
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(scheme)
            .map_err(|()| Error::Invalid(format!("no WebSocket URL for {url}")))?;
        let mut request = url.as_str().into_client_request()?;
        let bearer = tungstenite::http::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|e| Error::Invalid(format!("token: {e}")))?;
        request.headers_mut().insert("authorization", bearer);
        let connect = tokio_tungstenite::connect_async(request);
        let (stream, _) = tokio::time::timeout(Duration::from_secs(15), connect)
            .await
            .map_err(|_| Error::Decode("the WebSocket upgrade timed out".into()))??;
        Ok(Socket { stream })
    }
}

/// One raw WebSocket to the server.
#[derive(Debug)]
pub struct Socket {
    stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Socket {
    /// The next frame; `Ok(None)` when the server closed the socket (`Err` with the close code and reason).
    pub async fn next_frame(&mut self) -> Result<Option<ServerFrame>> {
        while let Some(message) = self.stream.next().await {
            match message? {
                tungstenite::Message::Text(text) => {
                    return serde_json::from_str(text.as_str())
                        .map(Some)
                        .map_err(|e| Error::Decode(format!("frame {}: {e}", text.as_str())));
                }
                tungstenite::Message::Close(Some(frame)) => {
                    return Err(Error::Decode(format!(
                        "closed by the server: {} {}",
                        u16::from(frame.code),
                        frame.reason.as_str()
                    )));
                }
                tungstenite::Message::Close(None) => return Ok(None),
                _ => {}
            }
        }
        Ok(None)
    }

    /// Sends a `{"type":"ping"}`; the server answers with a pong frame.
    pub async fn ping(&mut self) -> Result<()> {
        let ping = tungstenite::Message::text(r#"{"type":"ping"}"#);
        self.stream.send(ping).await?;
        Ok(())
    }

    /// Closes the socket politely.
    pub async fn close(mut self) -> Result<()> {
        self.stream.close(None).await?;
        Ok(())
    }
}

/// How a session ended, when the stream goes on.
enum End {
    /// The watch was dropped.
    Dropped,
    /// The socket was lost or failed; retry.
    Lost(String),
}

struct Runner {
    client: Client,
    options: WatchOptions,
    tx: mpsc::Sender<Result<Event>>,
    last_seen: Arc<Mutex<HashMap<String, u64>>>,
    statuses: Mutex<Statuses>,
}

/// The last status delivered of the latest messages, so that a status change missed while disconnected is
/// caught up from history, and one seen twice is delivered once.
#[derive(Default)]
struct Statuses {
    by_id: HashMap<String, (String, u64, MessageStatus)>,
    order: VecDeque<String>,
}

/// How many messages [`Statuses`] remembers.
const TRACKED_MESSAGES: usize = 10_000;

/// A status's place in the forward-only order (READ and FAILED are final).
fn rank(status: MessageStatus) -> u8 {
    match status {
        MessageStatus::Accepted | MessageStatus::Unknown => 0,
        MessageStatus::Sent => 1,
        MessageStatus::Pending => 2,
        MessageStatus::Delivered => 3,
        MessageStatus::Read | MessageStatus::Failed => 4,
    }
}

impl Statuses {
    fn remember(&mut self, message: &Message) {
        let entry = (message.conversation_id.clone(), message.seq, message.status);
        if self
            .by_id
            .insert(message.message_id.clone(), entry)
            .is_none()
        {
            self.order.push_back(message.message_id.clone());
            while self.order.len() > TRACKED_MESSAGES {
                if let Some(old) = self.order.pop_front() {
                    self.by_id.remove(&old);
                }
            }
        }
    }

    /// True when `status` moves the message forward (or the message is not remembered); remembers it.
    fn advance(&mut self, message_id: &str, status: MessageStatus) -> bool {
        match self.by_id.get_mut(message_id) {
            Some(entry) if rank(status) <= rank(entry.2) => false,
            Some(entry) => {
                entry.2 = status;
                true
            }
            None => true,
        }
    }

    /// Like [`Statuses::advance`], but false for a message not remembered.
    fn advance_known(&mut self, message_id: &str, status: MessageStatus) -> bool {
        self.by_id.contains_key(message_id) && self.advance(message_id, status)
    }

    /// The lowest `seq` of a remembered message of `conversation` whose status may still change.
    fn lowest_open(&self, conversation: &str) -> Option<u64> {
        self.by_id
            .values()
            .filter(|(c, _, status)| c == conversation && rank(*status) < 4)
            .map(|(_, seq, _)| *seq)
            .min()
    }
}

impl Runner {
    async fn run(self, opened: tokio::sync::oneshot::Sender<Result<()>>) {
        let mut opened = Some(opened);
        let mut connected_before = false;
        let mut backoff = self.options.min_backoff;
        loop {
            let mut connected = false;
            let end = self
                .session(connected_before, &mut connected, &mut opened)
                .await;
            if connected {
                connected_before = true;
                backoff = self.options.min_backoff;
            }
            let reason = match end {
                Ok(End::Dropped) => return,
                Ok(End::Lost(reason)) => reason,
                Err(e) if fatal(&e) => {
                    match opened.take() {
                        Some(opened) => {
                            let _ = opened.send(Err(e));
                        }
                        None => {
                            let _ = self.tx.send(Err(e)).await;
                        }
                    }
                    return;
                }
                Err(e) => e.to_string(),
            };
            if let Some(first) = opened.take() {
                // The first socket could not be opened: the caller gets the error.
                let _ = first.send(Err(Error::Decode(reason)));
                return;
            }
            let wait = jitter(backoff);
            let event = Event::Disconnected {
                reason,
                retry_in: wait,
            };
            if self.tx.send(Ok(event)).await.is_err() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.tx.closed() => return,
            }
            backoff = (backoff * 2).min(self.options.max_backoff);
        }
    }

    /// One socket: open, catch up, then live frames until it is lost.
    async fn session(
        &self,
        connected_before: bool,
        connected: &mut bool,
        opened: &mut Option<tokio::sync::oneshot::Sender<Result<()>>>,
    ) -> Result<End> {
        let socket = self.client.connect_ws().await?;
        let (mut sink, mut stream) = socket.stream.split();
        // The `connected` frame says the socket is registered: from now on every change reaches it.
        let user_id = loop {
            let frame = tokio::time::timeout(Duration::from_secs(15), stream.next()).await;
            match frame {
                Err(_) => return Ok(End::Lost("no connected frame within 15 s".into())),
                Ok(None) => return Ok(End::Lost("closed before the connected frame".into())),
                Ok(Some(message)) => {
                    if let Some(ServerFrame::Connected { user_id }) = decode(message?)? {
                        break user_id;
                    }
                }
            }
        };
        *connected = true;
        if let Some(opened) = opened.take() {
            let _ = opened.send(Ok(()));
        }
        let event = Event::Connected {
            user_id,
            reconnected: connected_before,
        };
        if self.tx.send(Ok(event)).await.is_err() {
            return Ok(End::Dropped);
        }
        // Catch up from history while the socket's frames are buffered (read, so the server never sees a slow
        // reader).
        let mut buffered = VecDeque::new();
        let mut baselined = HashSet::new();
        if self.options.catch_up {
            let catch_up = self.catch_up(connected_before, &mut baselined);
            tokio::pin!(catch_up);
            loop {
                tokio::select! {
                    done = &mut catch_up => {
                        match done {
                            Ok(true) => break,
                            Ok(false) => return Ok(End::Dropped),
                            Err(e) => return Err(e),
                        }
                    }
                    frame = stream.next() => match frame {
                        None => return Ok(End::Lost("closed while catching up".into())),
                        Some(message) => {
                            if let Some(frame) = decode(message?)? {
                                buffered.push_back(frame);
                            }
                        }
                    },
                }
            }
        }
        for frame in buffered {
            if !self.apply(frame, &mut baselined).await {
                return Ok(End::Dropped);
            }
        }
        // Live.
        let mut ping = tokio::time::interval(self.options.ping_interval);
        ping.tick().await;
        let mut last_frame = Instant::now();
        loop {
            tokio::select! {
                frame = stream.next() => {
                    let message = match frame {
                        None => return Ok(End::Lost("the server closed the socket".into())),
                        Some(Err(e)) => return Ok(End::Lost(Error::from(e).to_string())),
                        Some(Ok(message)) => message,
                    };
                    last_frame = Instant::now();
                    if let tungstenite::Message::Close(frame) = &message {
                        let why = frame.as_ref().map(|f| format!("closed by the server: {} {}", u16::from(f.code), f.reason.as_str()));
                        return Ok(End::Lost(why.unwrap_or_else(|| "closed by the server".into())));
                    }
                    if let Some(frame) = decode(message)?
                        && !self.apply(frame, &mut baselined).await
                    {
                        return Ok(End::Dropped);
                    }
                }
                _ = ping.tick() => {
                    if last_frame.elapsed() > self.options.idle_timeout {
                        return Ok(End::Lost(format!("no frame for {:?}", self.options.idle_timeout)));
                    }
                    let ping = tungstenite::Message::text(r#"{"type":"ping"}"#);
                    if let Err(e) = sink.send(ping).await {
                        return Ok(End::Lost(Error::from(e).to_string()));
                    }
                }
                () = self.tx.closed() => return Ok(End::Dropped),
            }
        }
    }

    /// Pages history after the last `seq` seen of every conversation (from the oldest message seen whose status
    /// may still change, whose newer status is then delivered as a [`Event::Status`]). On the very first
    /// connection, the conversations without a resume point are only noted (their frames are all new); after a
    /// reconnection, a conversation never seen is new to the user and replayed whole. False when the watch was
    /// dropped.
    async fn catch_up(&self, reconnected: bool, baselined: &mut HashSet<String>) -> Result<bool> {
        let conversations = self.client.all_conversations().await?;
        for conversation in conversations {
            let id = conversation.conversation_id;
            let known = lock(&self.last_seen).get(&id).copied();
            let after = match known {
                Some(seq) => seq,
                None if !reconnected => {
                    let newest = HistoryQuery {
                        limit: Some(1),
                        order: Some(Order::Desc),
                        ..HistoryQuery::default()
                    };
                    let page = match self.client.history(&id, &newest).await {
                        Err(e) if matches!(e.status(), Some(403 | 404)) => continue,
                        page => page?,
                    };
                    let seq = page.messages.first().map_or(0, |m| m.seq);
                    lock(&self.last_seen).entry(id.clone()).or_insert(seq);
                    baselined.insert(id);
                    continue;
                }
                None => 0,
            };
            let open = lock(&self.statuses).lowest_open(&id);
            let from = open.map_or(after, |seq| after.min(seq.saturating_sub(1)));
            let mut messages = std::pin::pin!(self.client.messages_after(
                &id,
                from,
                self.options.page_size
            ));
            while let Some(message) = messages.next().await {
                let message = match message {
                    // Left the conversation meanwhile: nothing more to see there.
                    Err(e) if matches!(e.status(), Some(403 | 404)) => break,
                    message => message?,
                };
                let delivered = if message.seq <= after {
                    self.refresh(&message).await
                } else {
                    self.deliver(message, true).await?
                };
                if !delivered {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Applies one frame: a message above the last `seq` seen of its conversation is delivered, others are
    /// duplicates of history. False when the watch was dropped.
    async fn apply(&self, frame: ServerFrame, baselined: &mut HashSet<String>) -> bool {
        match frame {
            ServerFrame::NewMessage(message) => {
                // Every frame of a conversation noted at the first connection came after the socket opened.
                if baselined.remove(&message.conversation_id) {
                    lock(&self.last_seen).insert(message.conversation_id.clone(), 0);
                }
                self.deliver(message, false).await.unwrap_or(false)
            }
            ServerFrame::StatusUpdate(update) => {
                self.tx.send(Ok(Event::Status(update))).await.is_ok()
            }
            ServerFrame::Connected { .. } | ServerFrame::Pong | ServerFrame::Unknown => true,
        }
    }

    /// Delivers the status of a message seen before, from history, when it moved on meanwhile; false when the
    /// watch was dropped.
    async fn refresh(&self, message: &Message) -> bool {
        if !lock(&self.statuses).advance_known(&message.message_id, message.status) {
            return true;
        }
        let at = match message.status {
            MessageStatus::Read => message.read_at,
            MessageStatus::Delivered => message.delivered_at,
            _ => None,
        };
        let update = StatusUpdate {
            message_id: message.message_id.clone(),
            conversation_id: message.conversation_id.clone(),
            seq: Some(message.seq),
            status: message.status,
            at: at.unwrap_or(message.timestamp),
            detail: message.failure_reason.clone(),
        };
        self.tx.send(Ok(Event::Status(update))).await.is_ok()
    }

    /// Delivers a message unless its `seq` was seen; Ok(false) when the watch was dropped.
    async fn deliver(&self, message: Message, caught_up: bool) -> Result<bool> {
        {
            let mut seen = lock(&self.last_seen);
            let last = seen.entry(message.conversation_id.clone()).or_insert(0);
            if message.seq <= *last {
                return Ok(true);
            }
            *last = message.seq;
        }
        lock(&self.statuses).remember(&message);
        let event = Event::Message { message, caught_up };
        Ok(self.tx.send(Ok(event)).await.is_ok())
    }
}

/// Errors after which reconnecting cannot help.
fn fatal(e: &Error) -> bool {
    matches!(e, Error::NotLoggedIn | Error::Invalid(_)) || matches!(e.status(), Some(401 | 403))
}

/// The frame in a WebSocket message; `None` for control frames and unknown frame types.
fn decode(message: tungstenite::Message) -> Result<Option<ServerFrame>> {
    match message {
        tungstenite::Message::Text(text) => match serde_json::from_str(text.as_str()) {
            Ok(ServerFrame::Unknown) => Ok(None),
            Ok(frame) => Ok(Some(frame)),
            Err(e) => Err(Error::Decode(format!("frame {}: {e}", text.as_str()))),
        },
        _ => Ok(None),
    }
}

/// `base` give or take a quarter, so that many clients do not reconnect in step.
fn jitter(base: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let factor = 0.75 + f64::from(nanos % 1000) / 2000.0;
    base.mul_f64(factor)
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

    #[test]
    fn jitter_stays_near_its_base() {
        let d = jitter(Duration::from_secs(4));
        assert!(d >= Duration::from_secs(3) && d <= Duration::from_secs(5));
    }
}
