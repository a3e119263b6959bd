//! `GET /v1/ws` (also `/notifications`): the real-time stream of a user's conversations. The token comes in
//! `?token=` or the `Authorization` header and is checked before the upgrade (401). The socket then receives
//! `connected`, every `new_message` and `status_update` of the user's conversations, and `pong` for each `ping`.
//! The server pings a quiet socket and closes it when no answer comes, closes it when its token expires, and
//! closes a slow reader rather than buffering for it.

use super::extract::bearer_token;
use super::problem::{ApiResult, Problem};
use super::state::AppState;
use crate::gateway::{Refused, Registration};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chat4all_core::ids::UserId;
use chat4all_core::time::now_millis;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

/// Largest frame a client may send: its messages are pings.
const MAX_CLIENT_FRAME: usize = 4096;
/// How often a quiet socket is pinged; one that stays silent for two periods is closed.
const PING_EVERY: Duration = Duration::from_secs(30);
/// Longest wait for the socket to take one frame: a client that stops reading must not pin its place.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Close codes (4000–4999 are the application's).
const CLOSE_TOKEN_EXPIRED: u16 = 4001;
const CLOSE_TOO_SLOW: u16 = 4002;
const CLOSE_NO_PONG: u16 = 4003;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_UNSUPPORTED: u16 = 1003;

/// The token, for clients that cannot set headers on a WebSocket (browsers).
#[derive(Deserialize)]
pub struct WsParams {
    token: Option<String>,
}

/// Upgrades to the real-time stream of the token's user.
pub async fn connect(
    State(state): State<AppState>,
    Query(params): Query<WsParams>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> ApiResult<Response> {
    let token = match &params.token {
        Some(token) => token.as_str(),
        None => bearer_token(&headers, "token")?,
    };
    let (user, expires_at) = state.tokens.verify_until(token)?;
    if !state.accounts.exists(&user).await? {
        return Err(Problem::unauthorized(
            "invalid token: its user does not exist",
        ));
    }
    let registration = state.hub.register(&user).map_err(|refused| match refused {
        Refused::UserFull => Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many real-time connections for this user; close one first",
        ),
        Refused::InstanceFull => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this server holds as many real-time connections as it may; try another instance or later",
        ),
    })?;
    tracing::info!(user_id = %user, "real-time connection opened");
    Ok(upgrade
        .max_message_size(MAX_CLIENT_FRAME)
        .max_frame_size(MAX_CLIENT_FRAME)
        .on_upgrade(move |socket| session(socket, user, expires_at, registration)))
}

/// Serves one socket until it closes, its token expires, it falls behind, or the server stops.
async fn session(socket: WebSocket, user: UserId, expires_at: i64, mut registration: Registration) {
    let (sink, mut stream) = socket.split();
    let mut sink = Sink(sink);
    let connected = json!({"type": "connected", "user_id": user}).to_string();
    if sink.send(Message::Text(connected.into())).await.is_err() {
        return;
    }
    let expiry = Instant::now() + Duration::from_millis((expires_at - now_millis()).max(0) as u64);
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    let mut last_heard = Instant::now();
    let close = loop {
        tokio::select! {
            frame = registration.frames.recv() => match frame {
                Some(frame) => match sink.send(Message::Text(Utf8Bytes::from(&*frame))).await {
                    Ok(()) => {}
                    Err(Stuck::TimedOut) => break Some((CLOSE_TOO_SLOW, "too slow: the socket did not take a frame for 10 s")),
                    Err(Stuck::Closed) => break None,
                },
                None => break None,
            },
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    last_heard = Instant::now();
                    match answer(&text) {
                        Ok(Some(reply)) => {
                            if sink.send(Message::Text(reply.into())).await.is_err() {
                                break None;
                            }
                        }
                        Ok(None) => {}
                        Err(reason) => break Some((CLOSE_UNSUPPORTED, reason)),
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    break Some((CLOSE_UNSUPPORTED, "binary frames are not understood"));
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break None,
                Some(Ok(_)) => last_heard = Instant::now(),
            },
            _ = ping.tick() => {
                if last_heard.elapsed() >= 2 * PING_EVERY {
                    break Some((CLOSE_NO_PONG, "no answer to ping"));
                }
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    break None;
                }
            }
            _ = tokio::time::sleep_until(expiry) => {
                break Some((CLOSE_TOKEN_EXPIRED, "token expired; reconnect with a fresh token"));
            }
            _ = registration.too_slow.cancelled() => {
                break Some((CLOSE_TOO_SLOW, "too slow: notifications were dropped; reconnect and catch up from history"));
            }
            _ = registration.closing.cancelled() => {
                break Some((CLOSE_GOING_AWAY, "server shutting down"));
            }
        }
    };
    if let Some((code, reason)) = close {
        metrics::counter!("websocket_closed_total", "reason" => close_reason(code)).increment(1);
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = sink.send(Message::Close(Some(frame))).await;
    }
    tracing::info!(user_id = %user, close_code = close.map(|(c, _)| c), "real-time connection closed");
}

/// The socket's sending half, each send bounded by [`SEND_TIMEOUT`].
struct Sink(futures::stream::SplitSink<WebSocket, Message>);

/// Why a frame was not sent.
enum Stuck {
    /// The socket did not take it in time.
    TimedOut,
    /// The socket is gone.
    Closed,
}

impl Sink {
    async fn send(&mut self, message: Message) -> Result<(), Stuck> {
        match tokio::time::timeout(SEND_TIMEOUT, self.0.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Stuck::Closed),
            Err(_) => Err(Stuck::TimedOut),
        }
    }
}

/// The answer to a client frame: `pong` for `ping`; an error for anything else but JSON objects with a `type`.
fn answer(text: &str) -> Result<Option<String>, &'static str> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|_| "frames must be JSON objects")?;
    match value.get("type").and_then(|t| t.as_str()) {
        Some("ping") => Ok(Some(json!({"type": "pong"}).to_string())),
        Some(_) => Ok(None),
        None => Err("frames must carry a \"type\""),
    }
}

fn close_reason(code: u16) -> &'static str {
    match code {
        CLOSE_TOKEN_EXPIRED => "token_expired",
        CLOSE_TOO_SLOW => "too_slow",
        CLOSE_NO_PONG => "no_pong",
        CLOSE_GOING_AWAY => "shutdown",
        _ => "bad_frame",
    }
}

/// Registers the socket series at zero.
pub fn register_metrics() {
    crate::gateway::hub::register_metrics();
    for code in [
        CLOSE_TOKEN_EXPIRED,
        CLOSE_TOO_SLOW,
        CLOSE_NO_PONG,
        CLOSE_GOING_AWAY,
        CLOSE_UNSUPPORTED,
    ] {
        metrics::counter!("websocket_closed_total", "reason" => close_reason(code)).absolute(0);
    }
}

#[cfg(test)]
mod tests {
    use super::answer;

    #[test]
    fn pings_are_answered_and_junk_is_refused() {
        assert_eq!(
            answer(r#"{"type":"ping"}"#).unwrap().as_deref(),
            Some(r#"{"type":"pong"}"#)
        );
        assert_eq!(answer(r#"{"type":"hello"}"#), Ok(None));
        assert!(answer("not json").is_err());
        assert!(answer(r#"{"no":"type"}"#).is_err());
    }
}
