//! The task behind a [`super::Watch`]: sessions, reconnection with backoff, catch-up from history.

use super::socket::decode;
use super::statuses::Statuses;
use super::{Event, ServerFrame, StatusUpdate, WatchOptions, lock};
use crate::types::{HistoryQuery, Message, MessageStatus, Order};
use crate::{Client, Error, Result};
use futures::{SinkExt, StreamExt};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite;

/// How a session ended, when the stream goes on.
enum End {
    /// The watch was dropped.
    Dropped,
    /// The socket was lost or failed; retry.
    Lost(String),
}

/// The state of one watch's task.
pub(super) struct Runner {
    pub(super) client: Client,
    pub(super) options: WatchOptions,
    pub(super) tx: mpsc::Sender<Result<Event>>,
    pub(super) last_seen: Arc<Mutex<HashMap<String, u64>>>,
    pub(super) statuses: Mutex<Statuses>,
}

impl Runner {
    pub(super) async fn run(self, opened: tokio::sync::oneshot::Sender<Result<()>>) {
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

/// `base` give or take a quarter, so that many clients do not reconnect in step.
fn jitter(base: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let factor = 0.75 + f64::from(nanos % 1000) / 2000.0;
    base.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_near_its_base() {
        let d = jitter(Duration::from_secs(4));
        assert!(d >= Duration::from_secs(3) && d <= Duration::from_secs(5));
    }
}
