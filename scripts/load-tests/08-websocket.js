// 08 websocket: LISTENERS users (default 20) hold a socket on /v1/ws, each in a conversation of its own with one
// sender user; messages are sent at RATE per second (default 100) into those conversations, round-robin. Every
// listener times each new_message from its acceptance (the frame's timestamp) to its arrival (accept-to-socket),
// and at the end compares what it received with the conversation's last seq: the difference is notifications lost;
// a message pushed twice counts as duplicated (thresholds: none of either).
import http from 'k6/http';
import ws from 'k6/ws';
import exec from 'k6/execution';
import { check } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { API_URL, QUICK, registerUsers, thresholds } from './lib/common.js';

const LISTENERS = parseInt(__ENV.LISTENERS || '20', 10);
const RATE = parseInt(__ENV.RATE || '100', 10);
const SEND_SECS = QUICK ? 6 : 120;
const LISTEN_SECS = SEND_SECS + 6; // sockets open 2 s before the first send and stay 4 s after the last
const delivery = new Trend('ws_delivery_ms', true);
const received = new Counter('ws_notifications_received');
const lost = new Counter('ws_notifications_lost');
const duplicated = new Counter('ws_notifications_duplicated');

export const options = {
  scenarios: {
    listeners: { executor: 'per-vu-iterations', vus: LISTENERS, iterations: 1, maxDuration: `${LISTEN_SECS + 30}s`, exec: 'listen' },
    senders: {
      executor: 'constant-arrival-rate', rate: RATE, timeUnit: '1s', duration: `${SEND_SECS}s`, startTime: '2s',
      preAllocatedVUs: 20, maxVUs: 100, exec: 'send',
    },
  },
  thresholds: thresholds({
    ws_notifications_lost: ['count<1'], ws_notifications_duplicated: ['count<1'], ws_delivery_ms: ['p(99)<1000'],
  }),
};

const JSON_HEADERS = { 'Content-Type': 'application/json' };

export function setup() {
  const users = registerUsers(LISTENERS + 1);
  const sender = users[LISTENERS];
  const conversations = [];
  for (let i = 0; i < LISTENERS; i++) {
    const id = `ws-${sender.run}-${i}`;
    const res = http.post(`${API_URL}/v1/conversations`,
      JSON.stringify({ conversation_id: id, type: 'group', members: [users[i].id] }),
      { headers: Object.assign({ Authorization: `Bearer ${sender.token}` }, JSON_HEADERS), tags: { endpoint: 'create' } });
    check(res, { 'conversation is 201': (r) => r.status === 201 });
    conversations.push(id);
  }
  return { listeners: users.slice(0, LISTENERS), sender, conversations };
}

export function listen(data) {
  // One listener per conversation: the scenario's iteration number is unique (VU ids are shared with the senders).
  const index = exec.scenario.iterationInTest;
  const me = data.listeners[index];
  const conversation = data.conversations[index];
  const seen = new Set();
  const url = `${API_URL.replace(/^http/, 'ws')}/v1/ws?token=${me.token}`;
  const res = ws.connect(url, {}, (socket) => {
    socket.on('message', (text) => {
      const frame = JSON.parse(text);
      if (frame.type === 'new_message' && frame.conversation_id === conversation) {
        if (seen.has(frame.message_id)) {
          duplicated.add(1);
          console.warn(`duplicate push of ${frame.message_id} (seq ${frame.seq})`);
          return;
        }
        seen.add(frame.message_id);
        delivery.add(Date.now() - frame.timestamp);
        received.add(1);
      }
    });
    socket.setTimeout(() => socket.close(), LISTEN_SECS * 1000);
  });
  check(res, { 'socket upgraded (101)': (r) => r && r.status === 101 });
  const last = http.get(`${API_URL}/v1/conversations/${conversation}/messages?limit=1&order=desc`,
    { headers: { Authorization: `Bearer ${me.token}` }, tags: { endpoint: 'history' } });
  const messages = last.json('messages') || [];
  const stored = messages.length ? messages[0].seq : 0;
  lost.add(Math.max(0, stored - seen.size));
}

export function send(data) {
  const i = exec.scenario.iterationInTest;
  const body = JSON.stringify({ conversation_id: data.conversations[i % LISTENERS], content: `push ${i}` });
  const res = http.post(`${API_URL}/v1/messages`, body,
    { headers: Object.assign({ Authorization: `Bearer ${data.sender.token}` }, JSON_HEADERS), tags: { endpoint: 'send' } });
  check(res, { 'send is 202': (r) => r.status === 202 });
}
