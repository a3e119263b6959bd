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
    await page.goto(base);
    return page;
  };
  const alice = await person('alice');
  const bob = await person('bob');
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

  await step('bob starts a direct chat with alice by her username', async () => {
    await bob.getByRole('button', { name: 'New', exact: true }).click();
    await bob.getByLabel('Their username').fill(`alice-${user}`);
    await bob.getByRole('button', { name: 'Start' }).click();
    await bob.getByRole('heading', { name: `alice-${user}` }).waitFor();
    await bob.getByLabel('Message', { exact: true }).fill('Just between us');
    await bob.keyboard.press('Enter');
    const entry = alice.locator('.conversation', { hasText: `bob-${user}` });
    await entry.locator('.badge', { hasText: '1' }).waitFor();
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
  process.exitCode = 1;
} finally {
  await browser.close();
}
