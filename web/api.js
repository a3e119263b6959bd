// The HTTP API, as the web app uses it. The token lives only in this module's memory: no storage that other
// scripts on the page could read, at the price of logging in again after a reload.

/** An answer other than 2xx, with the server's problem detail. */
export class ApiError extends Error {
  constructor(status, detail) {
    super(detail || `request failed (${status})`);
    this.status = status;
  }
}

let session = null; // { token, userId, username, expiresAt }
const expiredListeners = [];

export const currentUser = () => session && { userId: session.userId, username: session.username };
export const token = () => session?.token;
export const onSessionExpired = (listener) => expiredListeners.push(listener);

export function logOut() {
  session = null;
}

async function call(method, path, body, extraHeaders = {}) {
  const headers = { ...extraHeaders };
  if (session) headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, 'the server cannot be reached; check your connection');
  }
  if (response.status === 401 && session) {
    session = null;
    expiredListeners.forEach((listener) => listener());
  }
  const text = await response.text();
  const json = text ? safeJson(text) : null;
  if (!response.ok) throw new ApiError(response.status, json?.detail || json?.title || text);
  return json;
}

function safeJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

export async function register(username, password) {
  return call('POST', '/auth/register', { username, password });
}

export async function logIn(username, password) {
  const answer = await call('POST', '/auth/token', { username, password });
  session = {
    token: answer.access_token,
    userId: answer.user_id,
    username,
    expiresAt: Date.now() + answer.expires_in * 1000,
  };
  return currentUser();
}

/** Every conversation of the caller, newest first, each with its reading position (`unread`). */
export async function conversations() {
  const all = [];
  let cursor = null;
  do {
    const query = cursor ? `?limit=100&cursor=${encodeURIComponent(cursor)}` : '?limit=100';
    const page = await call('GET', `/v1/conversations${query}`);
    all.push(...page.conversations);
    cursor = page.next_cursor;
  } while (cursor && all.length < 1000);
  return all;
}

const conversationPath = (id) => `/v1/conversations/${encodeURIComponent(id)}`;

/** A page of history: `{ before }` pages back (newest first), `{ after }` catches up (oldest first). */
export async function history(conversationId, { before, after, limit = 50 } = {}) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (after !== undefined) {
    query.set('after', String(after));
  } else {
    query.set('order', 'desc');
    if (before !== undefined) query.set('before', String(before));
  }
  return call('GET', `${conversationPath(conversationId)}/messages?${query}`);
}

/** Sends a message; `key` makes a retry after a lost answer harmless (the server answers it once). */
export async function send(message, key) {
  return call('POST', '/v1/messages', message, { 'Idempotency-Key': key });
}

/** One message as history gives it (a live frame lacks a file's name and size). */
export const message = (id) => call('GET', `/v1/messages/${encodeURIComponent(id)}`);

export async function markRead(conversationId, upToSeq) {
  return call('POST', `${conversationPath(conversationId)}/read`, { up_to_seq: upToSeq });
}

const names = new Map(); // user id → username, filled as ids are met

/** The username of a user id, once `learnNames` has looked it up; `undefined` before. */
export const nameOf = (id) => names.get(id);

/** Looks up the names of the ids not known yet (100 per request). */
export async function learnNames(ids) {
  const unknown = [...new Set(ids)].filter((id) => !names.has(id));
  for (let i = 0; i < unknown.length; i += 100) {
    const batch = unknown.slice(i, i + 100);
    const found = await call('GET', `/v1/users?ids=${batch.map(encodeURIComponent).join(',')}`);
    found.users.forEach((u) => names.set(u.user_id, u.username));
  }
}

/** The user a person typed: a username or a user id. */
export async function findUser(who) {
  try {
    const user = await call('GET', `/v1/users/${encodeURIComponent(who)}`);
    names.set(user.user_id, user.username);
    return user;
  } catch (e) {
    if (e.status === 404) throw new ApiError(404, `nobody is called “${who}”`);
    throw e;
  }
}

export async function startConversation(userId) {
  return call('POST', '/v1/conversations', { type: 'direct', members: [session.userId, userId] });
}

export const group = (id) => call('GET', `/v1/groups/${encodeURIComponent(id)}`);
export const createGroup = (name, members) => call('POST', '/v1/groups', { name, initial_members: members });
export const addMember = (id, userId) =>
  call('POST', `/v1/groups/${encodeURIComponent(id)}/members`, { user_id: userId });
export const removeMember = (id, userId) =>
  call('DELETE', `/v1/groups/${encodeURIComponent(id)}/members/${encodeURIComponent(userId)}`);
export const promote = (id, userId) =>
  call('PUT', `/v1/groups/${encodeURIComponent(id)}/admins/${encodeURIComponent(userId)}`);

export const identities = async () => (await call('GET', '/v1/users/identities')).identities;
export const linkIdentity = (platform, value, preferred) =>
  call('POST', '/v1/users/identities', { platform, value, preferred });
export const unlinkIdentity = (platform, value) =>
  call('DELETE', `/v1/users/identities/${encodeURIComponent(platform)}/${encodeURIComponent(value)}`);

/** A fresh signed link to a file's bytes, valid without the token. */
export const downloadLink = async (fileId) =>
  (await call('GET', `/v1/files/${encodeURIComponent(fileId)}/download`)).download_url;

/** Uploads a file into a conversation, reporting progress (0..1); XMLHttpRequest because fetch cannot. */
export function upload(conversationId, file, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    form.append('conversation_id', conversationId);
    form.append('file', file, file.name);
    const request = new XMLHttpRequest();
    request.open('POST', '/v1/files');
    request.setRequestHeader('Authorization', `Bearer ${session.token}`);
    request.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    request.onload = () => {
      const json = safeJson(request.responseText);
      if (request.status === 201) resolve(json);
      else reject(new ApiError(request.status, json?.detail || json?.title));
    };
    request.onerror = () => reject(new ApiError(0, 'the upload was interrupted'));
    request.send(form);
  });
}
