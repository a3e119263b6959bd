// Dialogs: starting a conversation or a group, managing a group's members, linking identities.

import * as api from './api.js';
import { h, fill, dialog } from './dom.js';
import { who } from './chat.js';

/** A form whose submit runs `action`; its error shows in the form, and success calls `done`. */
function actionForm(fields, submitLabel, action, done) {
  const error = h('p', { class: 'error', role: 'alert' });
  const button = h('button', { type: 'submit' }, submitLabel);
  const form = h('form', {
    onsubmit: async (e) => {
      e.preventDefault();
      error.textContent = '';
      button.disabled = true;
      try {
        done(await action(new FormData(form)));
      } catch (failure) {
        error.textContent = failure.message;
      } finally {
        button.disabled = false;
      }
    },
  }, fields, button, error);
  return form;
}

const field = (id, label, attributes = {}) =>
  h('div', { class: 'field' }, h('label', { for: id }, label), h('input', { id, name: id, ...attributes }));

/** The user ids of the people a text names (usernames or ids, separated by spaces or commas). */
const people = async (text) =>
  Promise.all(text.split(/[\s,]+/).filter(Boolean).map(async (name) => (await api.findUser(name)).user_id));

/**
 * "New": a direct conversation with one user (the one already there, if any: `directWith(userId)` finds it), or a
 * group. `opened(id)` shows the conversation.
 */
export function newConversation(opened, directWith) {
  dialog('New conversation', (close) => h('div', {},
    h('h3', {}, 'Direct'),
    actionForm(field('peer', 'Their username', { required: true, autocomplete: 'off' }), 'Start',
      async (form) => {
        const peer = (await api.findUser(form.get('peer').trim())).user_id;
        const known = directWith(peer);
        return known ? { conversation_id: known } : api.startConversation(peer);
      },
      (c) => { close(); opened(c.conversation_id); }),
    h('h3', {}, 'Group'),
    actionForm([
      field('group-name', 'Group name', { required: true, maxlength: 200 }),
      field('group-members', 'Members: usernames separated by spaces or commas', { autocomplete: 'off' }),
    ], 'Create group',
    async (form) => api.createGroup(form.get('group-name').trim(), await people(form.get('group-members'))),
    (g) => { close(); opened(g.conversation_id); })));
}

/** A group's members, with what the caller may do to each. `left()` runs after the caller leaves. */
export function members(groupId, me, left) {
  const list = h('ul', { class: 'members' });
  const status = h('p', { class: 'error', role: 'alert' });
  const run = async (action) => {
    status.textContent = '';
    try {
      await action();
      await render();
    } catch (e) {
      status.textContent = e.message;
    }
  };
  const render = async () => {
    const group = await api.group(groupId);
    await api.learnNames(group.member_ids);
    const admin = group.admin_ids.includes(me);
    fill(list, group.member_ids.map((id) => h('li', { 'data-user': id },
      h('span', { class: 'id' }, id === me ? `${who(id)} (you)` : who(id)),
      group.admin_ids.includes(id) && h('span', { class: 'tag' }, 'admin'),
      group.created_by === id && h('span', { class: 'tag' }, 'creator'),
      admin && !group.admin_ids.includes(id) && h('button', { type: 'button', onclick: () => run(() => api.promote(groupId, id)) }, 'Make admin'),
      admin && id !== me && id !== group.created_by && h('button', { type: 'button', class: 'danger', onclick: () => run(() => api.removeMember(groupId, id)) }, 'Remove'))));
    return group;
  };
  dialog('Members', (close) => {
    const body = h('div', {},
      list,
      status,
      actionForm(field('new-member', 'Add a member by username', { required: true, autocomplete: 'off' }), 'Add',
        async (form) => api.addMember(groupId, (await api.findUser(form.get('new-member').trim())).user_id),
        () => render()),
      h('button', {
        type: 'button',
        class: 'danger',
        onclick: () => run(async () => {
          await api.removeMember(groupId, me);
          close();
          left();
        }),
      }, 'Leave the group'));
    render().catch((e) => { status.textContent = e.message; });
    return body;
  });
}

/** The caller's channel identities (WhatsApp number, Instagram handle): list, link, unlink. */
export function identities() {
  const list = h('ul', { class: 'identities' });
  const status = h('p', { class: 'error', role: 'alert' });
  const render = async () => {
    const linked = await api.identities();
    fill(list, linked.length ? linked.map((i) => h('li', {},
      h('span', {}, `${i.platform}: ${i.value}`),
      i.preferred && h('span', { class: 'tag' }, 'preferred'),
      h('button', {
        type: 'button',
        class: 'danger',
        onclick: async () => {
          try {
            await api.unlinkIdentity(i.platform, i.value);
            await render();
          } catch (e) {
            status.textContent = e.message;
          }
        },
      }, 'Unlink'))) : [h('li', { class: 'empty' }, 'No identity linked.')]);
  };
  dialog('Identities', () => {
    const platform = h('div', { class: 'field' },
      h('label', { for: 'platform' }, 'Channel'),
      h('select', { id: 'platform', name: 'platform' }, h('option', { value: 'whatsapp' }, 'WhatsApp'), h('option', { value: 'instagram' }, 'Instagram')));
    const preferred = h('div', { class: 'field check' },
      h('input', { id: 'preferred', name: 'preferred', type: 'checkbox' }),
      h('label', { for: 'preferred' }, 'Also send my messages there'));
    const body = h('div', {},
      list,
      status,
      actionForm([platform, field('identity', 'Number (+5511…) or @handle', { required: true }), preferred], 'Link',
        async (form) => api.linkIdentity(form.get('platform'), form.get('identity').trim(), form.has('preferred')),
        () => render()));
    render().catch((e) => { status.textContent = e.message; });
    return body;
  });
}
