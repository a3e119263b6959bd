// The conversation list and the open conversation: history with infinite scroll, sending, live changes, read
// receipts, files.

import * as api from './api.js';
import { h, fill, when, size, uniqueKey } from './dom.js';

const PAGE = 50;
const SEND_ATTEMPTS = 4;

const STATUS = {
  SENT: ['✓', 'Sent'],
  PENDING: ['…', 'Waiting for its channel'],
  DELIVERED: ['✓✓', 'Delivered'],
  READ: ['✓✓', 'Read'],
  FAILED: ['!', 'Failed'],
};

/** A person's name, or the end of their id while the name is being looked up (ids share their time prefix). */
export const who = (id) => api.nameOf(id) || `…${id.slice(-6)}`;

export function title(conversation, me) {
  if (conversation.name) return conversation.name;
  const others = conversation.members.filter((m) => m !== me);
  return others.length ? others.map(who).join(', ') : 'Notes to self';
}

/** The chat screen's state and views; `list` and `pane` are the two regions it fills. */
export class Chat {
  constructor({ list, pane, onManage }) {
    this.list = list;
    this.pane = pane;
    this.onManage = onManage;
    this.me = api.currentUser().userId;
    this.conversations = new Map(); // id → conversation entry of GET /v1/conversations
    this.open = null; // { id, messages: Map<seq, message>, rows: Map<message_id, li>, oldest, newest, hasMore }
    document.addEventListener('visibilitychange', () => this.markRead());
  }

  /** Reloads the conversation list (unread counts included); calls while one runs make one more run after it. */
  refresh() {
    if (this.refreshing) {
      this.refreshAgain = true;
      return this.refreshing;
    }
    this.refreshing = (async () => {
      do {
        this.refreshAgain = false;
        await this.load();
      } while (this.refreshAgain);
    })().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  async load() {
    const entries = await api.conversations();
    await api.learnNames(entries.flatMap((c) => (c.type === 'direct' ? c.members : [])));
    // A live message may be newer than the list's read of the store: the newer position wins.
    const merged = entries.map((c) => {
      const known = this.conversations.get(c.conversation_id);
      return known && known.last_seq > c.last_seq ? { ...c, last_seq: known.last_seq, unread: known.unread } : c;
    });
    this.conversations = new Map(merged.map((c) => [c.conversation_id, c]));
    this.renderList();
  }

  /** The direct conversation with `peer`, if there is one. */
  directWith(peer) {
    const members = [this.me, peer].sort().join();
    return [...this.conversations.values()].find((c) => c.type === 'direct' && [...c.members].sort().join() === members)
      ?.conversation_id;
  }

  renderList() {
    const items = [...this.conversations.values()].map((c) => {
      const unread = this.open?.id === c.conversation_id ? 0 : c.unread || 0;
      const label = title(c, this.me);
      return h('li', {},
        h('button', {
          type: 'button',
          class: this.open?.id === c.conversation_id ? 'conversation current' : 'conversation',
          'aria-current': this.open?.id === c.conversation_id ? 'true' : null,
          'data-conversation': c.conversation_id,
          onclick: () => this.show(c.conversation_id),
        },
        h('span', { class: 'name' }, label),
        h('span', { class: 'kind' }, c.type === 'group' ? 'group' : 'direct'),
        unread > 0 && h('span', { class: 'badge', 'aria-label': `${unread} unread` }, String(unread))));
    });
    fill(this.list, items.length ? items : [h('li', { class: 'empty' }, 'No conversations yet. Start one with “New”.')]);
  }

  /** Opens a conversation: its newest page of history, then older pages as the reader scrolls up. */
  async show(id) {
    const conversation = this.conversations.get(id);
    if (!conversation) return;
    const messages = h('ol', { class: 'messages', role: 'log', 'aria-live': 'polite', 'aria-label': 'Messages' });
    const progress = h('progress', { max: 1, value: 0, hidden: true, 'aria-label': 'Upload progress' });
    const text = h('textarea', { id: 'compose', name: 'content', rows: 2, maxlength: 10000, placeholder: 'Write a message', required: false });
    const attach = h('input', { id: 'attach', type: 'file', name: 'file' });
    const attachLabel = h('label', { for: 'attach', class: 'attach', title: 'Attach a file' }, 'Attach');
    attach.addEventListener('change', () => {
      attachLabel.textContent = attach.files[0] ? `Attach: ${attach.files[0].name}` : 'Attach';
    });
    const error = h('p', { class: 'error', role: 'alert' });
    const form = h('form', { class: 'composer', onsubmit: (e) => { e.preventDefault(); this.send(text, attach, progress, error); } },
      h('label', { for: 'compose', class: 'visually-hidden' }, 'Message'),
      text,
      attachLabel,
      attach,
      h('button', { type: 'submit' }, 'Send'),
      progress,
      error);
    text.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey) {
        e.preventDefault();
        form.requestSubmit();
      }
    });
    const header = h('header', { class: 'pane-header' },
      h('h2', {}, title(conversation, this.me)),
      conversation.type === 'group' && h('button', { type: 'button', onclick: () => this.onManage(id) }, 'Members'));
    fill(this.pane, header, messages, form);
    this.open = { id, list: messages, messages: new Map(), rows: new Map(), oldest: Infinity, newest: 0, hasMore: true };
    messages.addEventListener('scroll', () => messages.scrollTop < 80 && this.loadOlder());
    this.renderList();
    await this.loadOlder();
    messages.scrollTop = messages.scrollHeight;
    text.focus();
    this.markRead();
  }

  /** The page before the oldest message shown, kept in place on screen. */
  async loadOlder() {
    const open = this.open;
    if (!open || !open.hasMore || open.loading) return;
    open.loading = true;
    try {
      const page = await api.history(open.id, open.oldest === Infinity ? {} : { before: open.oldest });
      await api.learnNames(page.messages.map((m) => m.sender_id));
      if (this.open !== open) return;
      const keep = open.list.scrollHeight - open.list.scrollTop;
      page.messages.forEach((m) => this.put(m));
      open.hasMore = page.pagination.has_more && page.messages.length > 0;
      open.list.scrollTop = open.list.scrollHeight - keep;
    } finally {
      open.loading = false;
    }
  }

  /** Every message after the newest shown, oldest first: what a dropped socket missed. */
  async catchUp() {
    const open = this.open;
    if (!open) return;
    for (;;) {
      const page = await api.history(open.id, { after: open.newest });
      if (this.open !== open) return;
      page.messages.forEach((m) => this.put(m));
      if (page.messages.length < PAGE) break;
    }
    this.scrollToEnd();
    this.markRead();
  }

  /** Shows a message in order of `seq`, or updates it when it is there already. */
  put(message) {
    const open = this.open;
    const known = open.messages.get(message.seq);
    if (known) {
      this.setStatus(message.message_id, message.status, message.failure_reason);
      return;
    }
    open.messages.set(message.seq, message);
    const row = this.row(message);
    open.rows.set(message.message_id, row);
    const after = [...open.list.children].find((li) => Number(li.dataset.seq) > message.seq);
    open.list.insertBefore(row, after || null);
    open.oldest = Math.min(open.oldest, message.seq);
    open.newest = Math.max(open.newest, message.seq);
  }

  row(message) {
    const mine = message.sender_id === this.me;
    const file = message.file_id && h('button', {
      type: 'button',
      class: 'file',
      onclick: () => this.download(message.file_id),
    }, `⬇ ${message.file_metadata?.filename || 'Download file'}`, message.file_metadata && ` (${size(message.file_metadata.size_bytes)})`);
    const status = mine && h('span', { class: 'status' });
    const li = h('li', { class: mine ? 'message mine' : 'message', 'data-seq': message.seq, 'data-message': message.message_id },
      !mine && h('span', { class: 'sender' }, who(message.sender_id)),
      h('p', { class: 'content' }, message.content),
      file,
      h('span', { class: 'meta' }, h('time', { datetime: new Date(message.timestamp).toISOString() }, when(message.timestamp)), status));
    if (status) this.paintStatus(status, message.status, message.failure_reason);
    return li;
  }

  paintStatus(element, status, reason) {
    const [mark, label] = STATUS[status] || ['?', status];
    const full = status === 'FAILED' && reason ? `${label}: ${reason}` : label;
    element.dataset.status = status;
    element.title = full;
    fill(element, h('span', { 'aria-hidden': 'true' }, mark), h('span', { class: 'visually-hidden' }, full));
  }

  setStatus(messageId, status, reason) {
    const element = this.open?.rows.get(messageId)?.querySelector('.status');
    if (!element) return;
    const order = ['SENT', 'PENDING', 'DELIVERED', 'READ'];
    const current = element.dataset.status;
    if (current === 'FAILED' || (order.includes(status) && order.indexOf(status) < order.indexOf(current))) return;
    this.paintStatus(element, status, reason);
  }

  /** A frame of the real-time stream. */
  live(frame) {
    const entry = this.conversations.get(frame.conversation_id);
    if (frame.type === 'new_message') {
      if (!entry) {
        this.refresh();
        return;
      }
      const fresh = frame.seq > (entry.last_seq || 0);
      entry.last_seq = Math.max(entry.last_seq || 0, frame.seq);
      if (this.open?.id === frame.conversation_id) {
        this.showLive(frame);
      } else if (fresh && frame.sender_id !== this.me) {
        entry.unread = (entry.unread || 0) + 1;
      }
      // The conversation with the newest message comes first.
      this.conversations.delete(frame.conversation_id);
      this.conversations = new Map([[frame.conversation_id, entry], ...this.conversations]);
      this.renderList();
    } else if (frame.type === 'status_update' && this.open?.id === frame.conversation_id) {
      this.setStatus(frame.message_id, frame.status, frame.detail);
    }
  }

  /** A new message in the open conversation; one with a file is loaded whole, for the file's name and size. */
  async showLive(frame) {
    const open = this.open;
    const message = frame.file_id ? await api.message(frame.message_id).catch(() => frame) : frame;
    await api.learnNames([message.sender_id]).catch(() => {});
    if (this.open !== open) return;
    const atEnd = this.isAtEnd();
    this.put(message);
    if (atEnd || message.sender_id === this.me) this.scrollToEnd();
    this.markRead();
  }

  isAtEnd() {
    const list = this.open.list;
    return list.scrollHeight - list.scrollTop - list.clientHeight < 60;
  }

  scrollToEnd() {
    if (this.open) this.open.list.scrollTop = this.open.list.scrollHeight;
  }

  /** Tells the server the reader has seen everything shown, when the page is in view. */
  async markRead() {
    const open = this.open;
    if (!open || document.visibilityState !== 'visible') return;
    const entry = this.conversations.get(open.id);
    const seen = open.newest;
    if (!entry || seen <= (entry.read_up_to || 0)) return;
    entry.read_up_to = seen;
    entry.unread = 0;
    try {
      await api.markRead(open.id, seen);
    } catch {
      entry.read_up_to = 0; // tried again at the next change
    }
  }

  /** Sends the composer's text and file; a lost answer is retried with the same Idempotency-Key. */
  async send(text, attach, progress, error) {
    const open = this.open;
    const file = attach.files[0];
    const content = text.value.trim() || file?.name;
    error.textContent = '';
    if (!content) return;
    const message = { conversation_id: open.id, content };
    try {
      if (file) {
        progress.hidden = false;
        progress.value = 0;
        const uploaded = await api.upload(open.id, file, (done) => { progress.value = done; });
        message.file_id = uploaded.file_id;
      }
      const key = uniqueKey();
      for (let attempt = 1; ; attempt += 1) {
        try {
          await api.send(message, key);
          break;
        } catch (e) {
          const retryable = e.status === 0 || e.status === 429 || e.status >= 500;
          if (!retryable || attempt === SEND_ATTEMPTS) throw e;
          await new Promise((resolve) => setTimeout(resolve, 300 * 2 ** attempt));
        }
      }
      text.value = '';
      attach.value = '';
      attach.dispatchEvent(new Event('change'));
    } catch (e) {
      error.textContent = `Not sent: ${e.message}`;
    } finally {
      progress.hidden = true;
    }
  }

  async download(fileId) {
    try {
      location.assign(await api.downloadLink(fileId));
    } catch (e) {
      alert(`The file cannot be downloaded: ${e.message}`);
    }
  }
}
