// The web app's entry: the log-in screen, then the chat screen with its live stream.

import * as api from './api.js';
import { h, fill } from './dom.js';
import { follow } from './live.js';
import { Chat } from './chat.js';
import * as panels from './panels.js';

const root = document.getElementById('app');
let stream = null;

function logInScreen(notice = '') {
  const error = h('p', { class: 'error', role: 'alert' }, notice);
  const username = h('input', { id: 'username', name: 'username', required: true, autocomplete: 'username', maxlength: 64 });
  const password = h('input', { id: 'password', name: 'password', type: 'password', required: true, autocomplete: 'current-password' });
  const submit = async (register) => {
    error.textContent = '';
    if (!username.reportValidity() || !password.reportValidity()) return;
    try {
      if (register) await api.register(username.value.trim(), password.value);
      await api.logIn(username.value.trim(), password.value);
      chatScreen();
    } catch (e) {
      error.textContent = e.message;
    }
  };
  fill(root, h('section', { class: 'login' },
    h('h1', {}, 'Chat4All'),
    h('p', {}, 'One inbox for every channel.'),
    h('form', { onsubmit: (e) => { e.preventDefault(); submit(false); } },
      h('div', { class: 'field' }, h('label', { for: 'username' }, 'Username'), username),
      h('div', { class: 'field' }, h('label', { for: 'password' }, 'Password'), password),
      h('div', { class: 'actions' },
        h('button', { type: 'submit' }, 'Log in'),
        h('button', { type: 'button', class: 'secondary', onclick: () => submit(true) }, 'Create account')),
      error)));
  username.focus();
}

function chatScreen() {
  const me = api.currentUser();
  const list = h('ul', { class: 'conversations', 'aria-label': 'Conversations' });
  const pane = h('section', { class: 'pane', 'aria-label': 'Conversation' },
    h('p', { class: 'hint' }, 'Choose a conversation, or start one with “New”.'));
  const connection = h('span', { class: 'connection', role: 'status' }, 'connecting…');
  const chat = new Chat({
    list,
    pane,
    onManage: (id) => panels.members(id, me.userId, () => { pane.replaceChildren(); chat.open = null; chat.refresh(); }),
  });
  fill(root, h('div', { class: 'layout' },
    h('nav', { class: 'sidebar', 'aria-label': 'Chat4All' },
      h('header', {},
        h('h1', {}, 'Chat4All'),
        h('p', { class: 'me' }, 'Logged in as ', h('strong', { id: 'me' }, me.username)),
        connection),
      h('div', { class: 'toolbar' },
        h('button', {
          type: 'button',
          onclick: () => panels.newConversation((id) => chat.refresh().then(() => chat.show(id)), (peer) => chat.directWith(peer)),
        }, 'New'),
        h('button', { type: 'button', class: 'secondary', onclick: () => panels.identities() }, 'Identities'),
        h('button', { type: 'button', class: 'secondary', onclick: () => leave('') }, 'Log out')),
      list),
    pane));
  stream = follow({
    onFrame: (frame) => chat.live(frame),
    // Every (re)open: reload the list and catch up the open conversation from history.
    onOpen: () => chat.refresh().then(() => chat.catchUp()).catch(() => {}),
    onState: (state) => {
      if (state === 'expired') leave('Your session expired; please log in again.');
      else connection.textContent = state === 'live' ? 'live' : 'reconnecting…';
      connection.dataset.state = state;
    },
  });
}

function leave(notice) {
  stream?.stop();
  stream = null;
  api.logOut();
  document.querySelector('dialog')?.close();
  logInScreen(notice);
}

api.onSessionExpired(() => leave('Your session expired; please log in again.'));
logInScreen();
