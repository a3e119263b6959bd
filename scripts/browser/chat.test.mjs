// Two people chatting in the web app, in headless Chromium: both create accounts, Alice creates a group with Bob
// and sends a text, a file and some markup; Bob sees the conversation arrive live (no reload) with its unread
// count, opens it, reads it and downloads the file; Alice sees READ. Screenshots of the main screens go to
// SCREENSHOTS. Usage: node chat.test.mjs BASE_URL SCREENSHOTS_DIR (scripts/browser/run.sh starts the server).

import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

const [base, shots] = process.argv.slice(2);
if (!base || !shots) {
  console.error('usage: node chat.test.mjs BASE_URL SCREENSHOTS_DIR');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const TIMEOUT = 15_000;
const FILE = { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('Chat4All file for Bob\n'.repeat(2000)) };
const MARKUP = '<img src=x onerror="window.injected=1"><b>not bold</b>';

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  // The machine has no network beyond loopback: no background fetches, no first-run work.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const steps = [];
const step = async (name, body) => {
  const began = Date.now();
  await body();
  steps.push(name);
  console.log(`ok   ${name} (${Date.now() - began} ms)`);
};
const shot = (page, name) => page.screenshot({ path: join(shots, `${name}.png`) });

try {
  const person = async (name) => {
    const context = await browser.newContext({ viewport: { width: 1100, height: 720 } });
    const page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    page.on('pageerror', (e) => { throw new Error(`${name}'s page threw: ${e.message}`); });
    page.on('console', (m) => m.type() === 'error' && console.error(`${name}'s console: ${m.text()}`));
    return page;
  };
  const alice = await person('alice');
  const bob = await person('bob');
  // Bob's WebSockets pass through the test, so that it can cut his connection and hold it down.
  const link = { down: false, sockets: [], refused: () => {} };
  await bob.routeWebSocket(/\/v1\/ws/, (ws) => {
    if (link.down) {
      ws.close({ code: 4000, reason: 'the network is down' });
      link.refused();
      return;
    }
    link.sockets.push(ws);
    ws.connectToServer();
  });
  await alice.goto(base);
  await bob.goto(base);
  const password = 'correct horse battery staple';
  const user = `${Date.now().toString(36)}`;

  await step('both create accounts and log in', async () => {
    await shot(alice, 'login');
    for (const [page, name] of [[alice, `alice-${user}`], [bob, `bob-${user}`]]) {
      await page.getByLabel('Username').fill(name);
      await page.getByLabel('Password').fill(password);
      await page.getByRole('button', { name: 'Create account' }).click();
      await page.locator('#me', { hasText: name }).waitFor();
      await page.locator('.connection[data-state="live"]').waitFor();
    }
  });

  const bobName = `bob-${user}`;
  await step('a wrong password is refused with a message', async () => {
    const page = await browser.newPage();
    await page.goto(base);
    await page.getByLabel('Username').fill(`alice-${user}`);
    await page.getByLabel('Password').fill('wrong password');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('alert').filter({ hasText: /./ }).waitFor();
    await page.close();
  });

  await step('alice creates a group with bob', async () => {
    await alice.getByRole('button', { name: 'New', exact: true }).click();
    await alice.getByLabel('Group name').fill('Launch team');
    await alice.getByLabel(/Members: usernames/).fill(bobName);
    await shot(alice, 'new-conversation');
    await alice.getByRole('button', { name: 'Create group' }).click();
    await alice.getByRole('heading', { name: 'Launch team' }).waitFor();
  });

  await step('alice sends a text, markup and a file', async () => {
    await alice.getByLabel('Message', { exact: true }).fill('Hello Bob, welcome to the team');
    await alice.getByRole('button', { name: 'Send' }).click();
    await alice.locator('.message.mine', { hasText: 'Hello Bob' }).waitFor();
    await alice.getByLabel('Message', { exact: true }).fill(MARKUP);
    await alice.keyboard.press('Enter');
    await alice.locator('.message.mine .content', { hasText: '<b>not bold</b>' }).waitFor();
    await alice.locator('#attach').setInputFiles(FILE);
    await alice.getByLabel('Message', { exact: true }).fill('The notes');
    await alice.getByRole('button', { name: 'Send' }).click();
    await alice.locator('.message.mine .file', { hasText: FILE.name }).waitFor();
  });

  await step('bob sees the group arrive live with 3 unread, without reloading', async () => {
    const entry = bob.locator('.conversation', { hasText: 'Launch team' });
    await entry.locator('.badge', { hasText: '3' }).waitFor();
    await shot(bob, 'unread');
  });

  await step('bob opens it: text shown as text, file downloadable', async () => {
    await bob.locator('.conversation', { hasText: 'Launch team' }).click();
    await bob.locator('.message', { hasText: 'Hello Bob' }).locator('.sender', { hasText: `alice-${user}` }).waitFor();
    const markup = bob.locator('.message .content', { hasText: 'not bold' });
    assert.equal(await markup.textContent(), MARKUP);
    assert.equal(await bob.locator('.messages img, .messages b').count(), 0, 'markup in a message must not render');
    assert.equal(await bob.evaluate(() => window.injected), undefined);
    const [download] = await Promise.all([
      bob.waitForEvent('download'),
      bob.locator('.message .file', { hasText: FILE.name }).click(),
    ]);
    assert.equal(download.suggestedFilename(), FILE.name);
    assert.deepEqual(await readFile(await download.path()), FILE.buffer);
    await shot(bob, 'conversation-bob');
  });

  await step('alice sees READ on all three, live', async () => {
    await alice.locator('.message.mine .status[data-status="READ"]').nth(2).waitFor();
    assert.equal(await alice.locator('.message.mine .status:not([data-status="READ"])').count(), 0);
    await shot(alice, 'conversation-alice');
  });

  await step('bob answers and alice sees it live', async () => {
    await bob.getByLabel('Message', { exact: true }).fill('Thanks Alice!');
    await bob.keyboard.press('Enter');
    await alice.locator('.message:not(.mine)', { hasText: 'Thanks Alice!' }).waitFor();
  });

  // What a script would do: the API itself, with Alice's credentials.
  const call = async (method, path, token, body) => {
    const response = await fetch(base + path, {
      method,
      headers: { 'Content-Type': 'application/json', ...(token && { Authorization: `Bearer ${token}` }) },
      body: body && JSON.stringify(body),
    });
    const text = await response.text();
    assert.ok(response.ok, `${method} ${path}: ${response.status} ${text}`);
    return JSON.parse(text);
  };
  const aliceToken = (await call('POST', '/auth/token', null, { username: `alice-${user}`, password })).access_token;
  const bobId = (await call('GET', `/v1/users/${bobName}`, aliceToken)).user_id;

  await step('bob scrolls back through a long history, page by page', async () => {
    const long = `long-${user}`;
    for (let i = 1; i <= 70; i += 1) {
      await call('POST', '/v1/messages', aliceToken, { conversation_id: long, content: `line ${i}`, recipient_id: bobId });
    }
    const entry = bob.locator(`.conversation[data-conversation="${long}"]`);
    await entry.locator('.badge', { hasText: '70' }).waitFor();
    await entry.click();
    await bob.locator('.message', { hasText: 'line 70' }).waitFor();
    assert.equal(await bob.locator('.messages .message').count(), 50, 'one page of 50 first');
    await bob.locator('.messages').evaluate((list) => { list.scrollTop = 0; });
    await bob.locator('.message .content', { hasText: /^line 1$/ }).waitFor();
    const lines = await bob.locator('.messages .message .content').allTextContents();
    assert.deepEqual(lines, Array.from({ length: 70 }, (_, i) => `line ${i + 1}`));
  });

  await step('bob misses nothing while his connection is down: he catches up from history once', async () => {
    link.down = true;
    const retried = new Promise((resolve) => { link.refused = resolve; });
    link.sockets.splice(0).forEach((ws) => ws.close({ code: 4000, reason: 'the network is down' }));
    await bob.locator('.connection[data-state="reconnecting"]').waitFor();
    await call('POST', '/v1/messages', aliceToken, { conversation_id: `long-${user}`, content: 'sent while you were away', recipient_id: bobId });
    await retried; // the app tried again while the link was down, and will try again
    link.down = false;
    await bob.locator('.connection[data-state="live"]').waitFor();
    await bob.locator('.message', { hasText: 'sent while you were away' }).waitFor();
    await call('POST', '/v1/messages', aliceToken, { conversation_id: `long-${user}`, content: 'and after', recipient_id: bobId });
    await bob.locator('.message', { hasText: 'and after' }).waitFor();
    assert.equal(await bob.locator('.message', { hasText: 'sent while you were away' }).count(), 1);
  });

  await step('bob writes to alice by her username: their direct chat opens, alice sees 1 unread', async () => {
    await bob.locator('.conversation', { hasText: 'Launch team' }).click();
    await bob.getByRole('button', { name: 'New', exact: true }).click();
    await bob.getByLabel('Their username').fill(`alice-${user}`);
    await bob.getByRole('button', { name: 'Start' }).click();
    await bob.locator('.conversation.current', { hasText: `alice-${user}` }).waitFor();
    assert.equal(await bob.locator(`.conversation[data-conversation="long-${user}"]`).getAttribute('aria-current'), 'true',
      'the direct chat they already have, not a second one');
    await bob.getByLabel('Message', { exact: true }).fill('Just between us');
    await bob.keyboard.press('Enter');
    await bob.locator('.message.mine', { hasText: 'Just between us' }).waitFor();
    await alice.locator(`.conversation[data-conversation="long-${user}"] .badge`, { hasText: '1' }).waitFor();
    await shot(alice, 'conversation-list');
  });

  await step('alice manages the members', async () => {
    await alice.locator('.conversation', { hasText: 'Launch team' }).click();
    await alice.getByRole('button', { name: 'Members' }).click();
    const dialog = alice.getByRole('dialog', { name: 'Members' });
    const bobRow = dialog.locator('li', { hasText: bobName });
    await bobRow.waitFor();
    await bobRow.getByRole('button', { name: 'Make admin' }).click();
    await bobRow.locator('.tag', { hasText: 'admin' }).waitFor();
    await shot(alice, 'members');
    await alice.keyboard.press('Escape');
  });

  await step('alice links a WhatsApp identity', async () => {
    await alice.getByRole('button', { name: 'Identities' }).click();
    const dialog = alice.getByRole('dialog', { name: 'Identities' });
    await dialog.getByLabel(/Number/).fill(`+55119${String(Date.now()).slice(-8)}`);
    await dialog.getByRole('button', { name: 'Link' }).click();
    await dialog.locator('li', { hasText: 'whatsapp: +55119' }).waitFor();
    await alice.keyboard.press('Escape');
  });
  console.log(`${steps.length} passed, 0 failed; screenshots in ${shots}`);
} catch (e) {
  console.error(`FAIL after ${steps.length} passed: ${e.stack || e}`);
  for (const [i, context] of browser.contexts().entries()) {
    for (const page of context.pages()) await page.screenshot({ path: join(shots, `failure-${i}.png`) }).catch(() => {});
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
