//! One raw WebSocket: the upgrade with the client's token and typed frames.

use super::ServerFrame;
use crate::{Client, Error, Result};
use futures::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

impl Client {
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
    pub(super) stream: tokio_tungstenite::WebSocketStream<
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

/// The frame in a WebSocket message; `None` for control frames and unknown frame types.
pub(super) fn decode(message: tungstenite::Message) -> Result<Option<ServerFrame>> {
    match message {
        tungstenite::Message::Text(text) => match serde_json::from_str(text.as_str()) {
            Ok(ServerFrame::Unknown) => Ok(None),
            Ok(frame) => Ok(Some(frame)),
            Err(e) => Err(Error::Decode(format!("frame {}: {e}", text.as_str()))),
        },
        _ => Ok(None),
    }
}
