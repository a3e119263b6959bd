// Shared pieces of the Chat4All k6 scenarios: configuration, users, and the requests every scenario makes.
import http from 'k6/http';
import { check } from 'k6';

export const API_URL = (__ENV.API_URL || 'http://127.0.0.1:8080').replace(/\/$/, '');
export const QUICK = __ENV.QUICK === '1';
const JSON_HEADERS = { 'Content-Type': 'application/json' };

/** The seed's thresholds: p95 < 200 ms, errors < 1 % (spikes may relax p99 to 500 ms). */
export function thresholds(extra = {}) {
  return Object.assign({
    'http_req_duration{endpoint:send}': ['p(95)<200'],
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
  }, extra);
}

/** A ~10 s stand-in for any scenario when QUICK=1. */
export function quick(vus) {
  return { quick: { executor: 'constant-vus', vus: Math.min(vus, 10), duration: '10s' } };
}

/** Registers `count` users of this run (unique names) and returns their tokens and ids. */
export function registerUsers(count) {
  const run = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
  const users = [];
  for (let i = 0; i < count; i++) {
    const username = `k6_${run}_${i}`;
    const password = `k6-password-${run}`;
    const created = http.post(`${API_URL}/auth/register`, JSON.stringify({ username, password }), { headers: JSON_HEADERS, tags: { endpoint: 'register' } });
    check(created, { 'register is 201': (r) => r.status === 201 });
    const token = http.post(`${API_URL}/auth/token`, JSON.stringify({ username, password }), { headers: JSON_HEADERS, tags: { endpoint: 'token' } });
    check(token, { 'token is 200': (r) => r.status === 200 });
    users.push({ token: token.json('access_token'), id: token.json('user_id'), run });
  }
  return users;
}

/** The user of the current VU (users are shared round-robin). */
export function userOf(data) {
  return data.users[(__VU - 1) % data.users.length];
}

function auth(user, extra = {}) {
  return { headers: Object.assign({ Authorization: `Bearer ${user.token}` }, JSON_HEADERS, extra) };
}

/** Sends a message into one of the user's conversations; checks the 202 and the compact body. */
export function sendMessage(user, iteration) {
  const conversation = `k6-${user.run}-${__VU}-${iteration % 5}`;
  const body = JSON.stringify({ conversation_id: conversation, content: `load test message ${iteration}` });
  const res = http.post(`${API_URL}/v1/messages`, body, Object.assign(auth(user), { tags: { endpoint: 'send' } }));
  check(res, {
    'send is 202': (r) => r.status === 202,
    'send answers a message_id': (r) => r.body && r.body.includes('"message_id":"'),
  });
  return conversation;
}

/** Reads the last messages of a conversation. */
export function readHistory(user, conversation) {
  const res = http.get(`${API_URL}/v1/conversations/${conversation}/messages?limit=20&order=desc`, Object.assign(auth(user), { tags: { endpoint: 'history' } }));
  check(res, { 'history is 200': (r) => r.status === 200 });
}

/** Uploads a file of `size` bytes into the user's conversation. */
export function uploadFile(user, size, iteration) {
  const content = 'x'.repeat(size);
  const form = { conversation_id: `k6-files-${user.run}-${__VU}`, file: http.file(content, `file-${iteration}.bin`, 'application/octet-stream') };
  const res = http.post(`${API_URL}/v1/files`, form, { headers: { Authorization: `Bearer ${user.token}` }, tags: { endpoint: 'upload' } });
  check(res, {
    'upload is 201': (r) => r.status === 201,
    'upload answers a checksum': (r) => r.body && r.body.includes('"checksum":"sha256:'),
  });
}
