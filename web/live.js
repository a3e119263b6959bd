// The real-time stream: one WebSocket, reopened with backoff when it drops. After every (re)open the app catches
// up from history, so nothing said while the socket was down is missed (docs/api.md, "Real time").

import { token } from './api.js';

const PING_EVERY_MS = 25_000;
const MAX_BACKOFF_MS = 15_000;

/**
 * Follows the stream until `stop()`. `onFrame(frame)` gets every frame; `onState(state)` gets 'live',
 * 'reconnecting' or 'expired' (the token expired: the app asks to log in again).
 */
export function follow({ onFrame, onOpen, onState }) {
  let socket = null;
  let ping = null;
  let attempt = 0;
  let stopped = false;
  let retry = null;

  function open() {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    socket = new WebSocket(`${scheme}://${location.host}/v1/ws?token=${encodeURIComponent(token())}`);
    socket.onmessage = (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame.type === 'connected') {
        attempt = 0;
        onState('live');
        onOpen();
      } else {
        onFrame(frame);
      }
    };
    socket.onclose = (event) => {
      clearInterval(ping);
      if (stopped) return;
      if (event.code === 4001 || !token()) {
        onState('expired');
        return;
      }
      onState('reconnecting');
      const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** attempt) * (0.5 + Math.random() / 2);
      attempt += 1;
      retry = setTimeout(open, delay);
    };
    ping = setInterval(() => socket.readyState === WebSocket.OPEN && socket.send('{"type":"ping"}'), PING_EVERY_MS);
  }

  open();
  return {
    stop() {
      stopped = true;
      clearTimeout(retry);
      clearInterval(ping);
      socket?.close(1000);
    },
  };
}
