// The settings page in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core), as a person uses it: mouse, keyboard only, and a phone's width.
//
//   node tests/web/page.test.mjs <base url> <fake cloud url> [--oidc-base <url> --oidc-issuer-port <port>]
//
// Run by tests/tests/web_page.rs, which starts the local server (connections-local)
// and the fake Bitbucket and passes the fake's secrets in FAKE_BITBUCKET. With
// --oidc-base, a second server serves the page with sign-in configured against the tiny OpenID
// provider this script serves on --oidc-issuer-port.
// Screenshots: target/web-screenshots/. Exits non-zero when a scenario fails.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const [base, fakeCloud, ...rest] = process.argv.slice(2);
if (!base || !fakeCloud) {
  console.error('usage: node tests/web/page.test.mjs <base url> <fake cloud url> [--oidc-base URL --oidc-issuer-port PORT]');
  process.exit(2);
}
const option = (name) => {
  const at = rest.indexOf(name);
  return at >= 0 ? rest[at + 1] : undefined;
};
const oidcBase = option('--oidc-base');
const oauthBase = option('--oauth-base');
const issuerPort = Number(option('--oidc-issuer-port') || 0);
const fake = JSON.parse(process.env.FAKE_BITBUCKET || '{}');
for (const key of ['email', 'api_token', 'write_only', 'four_scopes', 'closed_port']) {
  assert.ok(fake[key], `FAKE_BITBUCKET must name ${key}`);
}
const WRONG_TOKEN = 'ATATT3xFfGF0-no-such-token-5rT1';
const SECRETS = [fake.api_token, fake.write_only, fake.four_scopes, WRONG_TOKEN];
const SCOPES = ['read:repository:bitbucket', 'write:repository:bitbucket', 'read:pullrequest:bitbucket', 'write:pullrequest:bitbucket'];
const shots = path.resolve(here, '../../target/web-screenshots');
fs.mkdirSync(shots, { recursive: true });
const AXE = fs.readFileSync(path.join(here, 'node_modules/axe-core/axe.min.js'), 'utf8');

const consoleMessages = [];
const pageErrors = [];
const cspViolations = [];
const requests = [];
const axeFindings = [];
const axeStates = [];
const contexts = [];
const started = Date.now();

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  // Playwright gives every launch a fresh, empty --user-data-dir of its own.
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync',
  ],
});

async function newPage(user, { viewport = { width: 1280, height: 900 }, origin = base } = {}) {
  const context = await browser.newContext({
    viewport,
    // Each scenario its own user (the local run's development identity); none when
    // signing in, where the header would also go to the identity provider.
    extraHTTPHeaders: user ? { 'x-dev-user': user } : {},
    reducedMotion: 'reduce',
    locale: 'en-GB',
    timezoneId: 'UTC',
  });
  contexts.push(context);
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin });
  await context.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  const page = await context.newPage();
  page.setDefaultTimeout(60_000);
  page.on('console', (message) => consoleMessages.push(`[${message.type()}] ${message.text()}`));
  page.on('pageerror', (error) => pageErrors.push(error.message));
  page.on('request', (request) => {
    const entry = { method: request.method(), url: request.url(), body: request.postData() || '', headers: {} };
    requests.push(entry);
    // allHeaders() resolves later than the request event: read them through `headersReady`,
    // or a check right after a quick page may find none yet.
    entry.headersReady = request.allHeaders().then((headers) => { entry.headers = headers; return headers; }, () => entry.headers);
  });
  page.on('framenavigated', async (frame) => {
    if (frame !== page.mainFrame()) return;
    try {
      cspViolations.push(...(await page.evaluate(() => window.__csp || [])));
    } catch {
      // navigating again
    }
  });
  return page;
}

async function collectViolations(page) {
  cspViolations.push(...(await page.evaluate(() => window.__csp || [])));
}

async function until(page, what, predicate, arg) {
  const began = Date.now();
  try {
    await page.waitForFunction(predicate, arg, { timeout: 60_000 });
  } catch (error) {
    throw new Error(`timed out waiting until ${what}: ${error.message.split('\n')[0]}`);
  }
  const waited = (Date.now() - began) / 1000;
  if (waited > 3) console.log(`  (waited ${waited.toFixed(1)} s until ${what})`);
}

const text = (page, selector) => page.locator(selector).innerText();
const activeId = (page) => page.evaluate(() => document.activeElement && document.activeElement.id);

async function shot(page, name, options = {}) {
  await page.screenshot({ path: path.join(shots, `${name}.png`), ...options });
}

async function openList(page, target = base) {
  const response = await page.goto(`${target}/`);
  assert.equal(response && response.status(), 200, 'GET / serves the page');
  await until(page, 'the list has loaded', () => document.getElementById('loading').hidden);
}

async function openAdd(page) {
  await page.click('#add');
  await page.locator('#connection-dialog[open]').waitFor();
}

async function fillAdd(page, { name, password, username = fake.email, url }) {
  await page.fill('#f-name', name);
  if (url !== undefined) await page.fill('#f-url', url);
  await page.fill('#f-username', username);
  await page.fill('#f-password', password);
}

async function addConnection(page, fields) {
  await openAdd(page);
  await fillAdd(page, fields);
  await page.click('#save');
  await until(page, `"${fields.name}" is added`, () => !document.getElementById('connection-dialog').open);
  await until(page, `"${fields.name}" is listed`, (name) => [...document.querySelectorAll('#connections a')].some((a) => a.textContent === name), fields.name);
}

async function cardOf(page, name) {
  return page.locator('#connections li.card', { has: page.locator('a', { hasText: name }) });
}

async function openDetail(page, name) {
  await page.click(`#connections a:text-is("${name}")`);
  await until(page, `the view of "${name}" is shown`, (n) => document.getElementById('detail-title').textContent === n && !document.getElementById('detail-view').hidden, name);
}

async function assertNoSecrets(page, context) {
  const found = await page.evaluate((secrets) => {
    const where = [];
    for (const secret of secrets) {
      if (document.documentElement.outerHTML.includes(secret)) where.push(`DOM has ${secret}`);
      if (document.body.innerText.includes(secret)) where.push(`text has ${secret}`);
      for (const input of document.querySelectorAll('input, select, textarea')) {
        if (input.value.includes(secret)) where.push(`#${input.id} holds ${secret}`);
      }
      if (document.cookie.includes(secret)) where.push('cookie');
    }
    for (const store of [localStorage, sessionStorage]) {
      for (let i = 0; i < store.length; i += 1) where.push(`storage key ${store.key(i)}`);
    }
    return where;
  }, SECRETS);
  assert.deepEqual(found, [], 'no secret in the page, and nothing in storage');
  assert.deepEqual(await context.cookies(), [], 'no cookies');
}

async function runAxe(page, state) {
  // Evaluated through the DevTools protocol: the page's CSP (script-src 'self') would
  // refuse it as an inline <script>, and that refusal is itself checked below.
  if (!(await page.evaluate(() => Boolean(window.axe)))) await page.evaluate(AXE);
  const result = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help, targets: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
  });
  axeStates.push(state);
  for (const violation of result) axeFindings.push({ state, ...violation });
}

// ---------------------------------------------------------------- scenarios

const scenarios = [];
const scenario = (name, body) => scenarios.push({ name, body });

scenario('add with an API token: busy state, success message, the row with its capabilities', async () => {
  const page = await newPage('alice');
  await openList(page);
  assert.ok(await page.locator('#empty').isVisible(), 'an empty list says so');
  await openAdd(page);
  assert.equal(await activeId(page), 'f-name', 'the dialog starts at Name');
  assert.equal(await page.inputValue('#f-url'), 'https://api.bitbucket.org/2.0', 'the server URL is prefilled');
  assert.equal(await page.getAttribute('#f-password', 'type'), 'password');
  assert.equal(await page.getAttribute('#f-password', 'autocomplete'), 'new-password');
  for (const id of ['f-name', 'f-url', 'f-username', 'f-password', 'f-kind', 'f-resource', 'f-expires']) {
    assert.equal(await page.locator(`label[for="${id}"]`).count(), 1, `#${id} has a label`);
  }
  // The kind follows the fields until the user picks one.
  await page.fill('#f-username', '');
  await page.fill('#f-resource', 'acme/api');
  assert.equal(await page.inputValue('#f-kind'), 'repository_access_token', 'no username + resource: an access token');
  await page.fill('#f-resource', '');
  await fillAdd(page, { name: 'work', password: fake.api_token, url: fakeCloud });
  assert.equal(await page.inputValue('#f-kind'), 'api_token', 'an email: an API token');
  await page.fill('#f-expires', '2099-06-30');
  await page.evaluate(() => document.getElementById('connection-dialog').scrollTo(0, 0));
  await shot(page, 'dialog');
  // How to create a token: the four scopes, and a Copy button.
  await page.click('#howto summary');
  const scopes = await page.locator('#scopes code').allInnerTexts();
  assert.deepEqual(scopes, SCOPES);
  await page.click('#copy-scopes');
  await until(page, 'the scopes are copied', () => document.getElementById('copy-status').textContent !== '');
  if ((await text(page, '#copy-status')) === 'Copied.') {
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), SCOPES.join('\n'));
  }
  await shot(page, 'dialog-howto');

  // Saving: the button says what is happening while Bitbucket is asked.
  await page.route('**/connections', async (route) => {
    if (route.request().method() === 'POST') await new Promise((r) => setTimeout(r, 800));
    await route.continue();
  });
  await page.click('#save');
  await until(page, 'the dialog shows it is checking', () => {
    const save = document.getElementById('save');
    return save.disabled && save.textContent === 'Checking with Bitbucket…'
      && document.getElementById('connection-form').getAttribute('aria-busy') === 'true';
  });
  await until(page, 'the dialog closes', () => !document.getElementById('connection-dialog').open);
  await page.unroute('**/connections');
  const post = requests.find((r) => r.method === 'POST' && r.url === `${base}/connections`);
  assert.equal(JSON.parse(post.body).expires_at, '2099-06-30', 'the expiry date is sent as YYYY-MM-DD');
  const status = await text(page, '#status');
  assert.match(status, /Connection “work” added/);
  assert.equal(await page.getAttribute('#status', 'aria-live'), 'polite');
  const card = await cardOf(page, 'work');
  assert.match(await card.innerText(), /Verified/);
  assert.match(await card.innerText(), /Bitbucket Cloud/);
  assert.match(await card.innerText(), /Import, push and pull requests work\./);
  assert.match(await card.innerText(), /J Doe/);
  await assertNoSecrets(page, page.context());

  await addConnection(page, { name: 'four scopes', password: fake.four_scopes, url: fakeCloud });
  assert.match(await (await cardOf(page, 'four scopes')).innerText(), /jdoe@example\.com/, 'a hidden account shows the email');
  await shot(page, 'list', { fullPage: true });
  await runAxe(page, 'list');
  await openAdd(page);
  await runAxe(page, 'add dialog');
  await page.keyboard.press('Escape');
  await collectViolations(page);
});

scenario('a wrong token: the error sits at the secret field, everything else stays typed', async () => {
  const page = await newPage('bob');
  await openList(page);
  await openAdd(page);
  await fillAdd(page, { name: 'wrong', password: WRONG_TOKEN, url: fakeCloud });
  await page.click('#save');
  await until(page, 'the password field is marked', () => document.getElementById('f-password').getAttribute('aria-invalid') === 'true');
  assert.ok(await page.locator('#connection-dialog[open]').isVisible(), 'the dialog stays open');
  assert.match(await text(page, '#f-password-error'), /Token or password was refused by Bitbucket\./);
  assert.match(await page.getAttribute('#f-password', 'aria-describedby'), /f-password-error/);
  assert.equal(await activeId(page), 'f-password', 'focus moves to the field at fault');
  assert.match(await text(page, '#form-problem'), /Bitbucket rejected the credentials/);
  assert.equal(await page.inputValue('#f-password'), '', 'the secret is cleared');
  assert.equal(await page.inputValue('#f-name'), 'wrong', 'the name is kept');
  assert.equal(await page.inputValue('#f-username'), fake.email, 'the username is kept');
  assert.equal(await page.inputValue('#f-url'), fakeCloud, 'the URL is kept');
  await shot(page, 'error-invalid-credentials');
  await runAxe(page, 'error state');
  await assertNoSecrets(page, page.context());

  // Missing scopes are listed by name.
  await page.fill('#f-name', 'write only');
  await page.fill('#f-password', fake.write_only);
  await page.click('#save');
  await until(page, 'the missing scopes are listed', () => document.querySelectorAll('#form-problem .missing-scopes li').length > 0);
  const missing = await page.locator('#form-problem .missing-scopes li').allInnerTexts();
  assert.deepEqual(missing.sort(), ['read:pullrequest:bitbucket', 'read:repository:bitbucket']);
  assert.equal(await activeId(page), 'form-problem', 'with no field at fault, focus goes to the message');
  assert.equal(await page.inputValue('#f-password'), '');
  await shot(page, 'error-missing-scopes');

  // An unreachable server: nothing listens on this loopback port (no packet leaves the machine).
  await page.fill('#f-name', 'nowhere');
  await page.fill('#f-url', `http://127.0.0.1:${fake.closed_port}/2.0`);
  await page.fill('#f-password', fake.api_token);
  await page.click('#save');
  await until(page, 'the unreachable server is reported', () => /unreachable/i.test(document.getElementById('form-problem').innerText));
  assert.match(await text(page, '#form-problem'), /Bitbucket is unreachable/);
  assert.equal(await page.inputValue('#f-password'), '');
  await assertNoSecrets(page, page.context());

  // Closing clears the secret; the list is still empty.
  await page.click('#cancel');
  assert.equal(await page.locator('#connections li').count(), 0);
  await collectViolations(page);
});

scenario('view, rename with If-Match, a new server needs the secret again, re-verify after revocation', async () => {
  const page = await newPage('carol');
  await openList(page);
  await addConnection(page, { name: 'revocable', password: fake.four_scopes, url: fakeCloud });
  await openDetail(page, 'revocable');
  assert.equal(await activeId(page), 'detail-title', 'the view takes focus');
  const view = await text(page, '#detail-view');
  assert.match(view, /Everything the product needs works/, 'the warning is shown');
  assert.match(view, /Open pull requests: works/);
  assert.match(view, /Show the account: needs read:user:bitbucket/);
  assert.match(view, /x-bitbucket-api-token-auth/);
  await runAxe(page, 'detail view');

  // Rename: the PATCH carries If-Match and no password.
  await page.click('#edit');
  await page.locator('#connection-dialog[open]').waitFor();
  assert.equal(await page.inputValue('#f-name'), 'revocable');
  assert.equal(await page.inputValue('#f-password'), '', 'the secret is never shown');
  await page.fill('#f-name', 'renamed');
  await page.click('#save');
  await until(page, 'the rename is shown', () => document.getElementById('detail-title').textContent === 'renamed');
  const patch = requests.filter((r) => r.method === 'PATCH').pop();
  assert.deepEqual(JSON.parse(patch.body), { name: 'renamed' });
  assert.match((await patch.headersReady)['if-match'] || '', /^"\d+"$/, 'If-Match carries the ETag');
  assert.match(await text(page, '#status'), /Saved “renamed”/);

  // Another server without the secret: the API refuses at the password field.
  await page.click('#edit');
  await page.fill('#f-url', fakeCloud.replace('127.0.0.1', 'localhost'));
  await page.click('#save');
  await until(page, 'the secret is asked for again', () => !document.getElementById('f-password-error').hidden);
  assert.match(await text(page, '#f-password-error'), /Enter the password or token again/);
  assert.equal(await page.getAttribute('#f-password', 'aria-invalid'), 'true');
  await page.click('#cancel');

  // Revoked at Bitbucket: re-verify turns the badge invalid.
  const revoked = await fetch(`${new URL(fakeCloud).origin}/__revoke`, { method: 'POST', body: fake.four_scopes });
  assert.equal(revoked.status, 204);
  await page.click('#reverify');
  await until(page, 'the badge turns invalid', () => document.querySelector('#detail-badge .badge-invalid') !== null);
  assert.match(await text(page, '#status'), /Bitbucket refused “renamed”/);
  assert.equal(await page.getAttribute('#status', 'data-tone'), 'bad', 'a refusal is not shown as a success');
  assert.match(await text(page, '#detail-body'), /Edit the connection to enter a new token/);
  assert.equal(await page.locator('#detail-body ul.warnings').count(), 0, 'no note from the last success while invalid');
  assert.match(await text(page, '#detail-body'), /Last used\s+Not used yet/, 'no worker has used it');
  await shot(page, 'detail-invalid', { fullPage: true });
  await page.click('a.back');
  await until(page, 'the list shows it invalid', () => /Invalid/.test(document.getElementById('connections').innerText));
  await collectViolations(page);
});

scenario('delete asks first, sends If-Match, and the row is gone', async () => {
  const page = await newPage('dave');
  await openList(page);
  await addConnection(page, { name: 'short-lived', password: fake.api_token, url: fakeCloud });
  await openDetail(page, 'short-lived');
  await page.click('#delete');
  await page.locator('#confirm-dialog[open]').waitFor();
  assert.match(await text(page, '#confirm-title'), /Delete “short-lived”\?/);
  assert.equal(await activeId(page), 'confirm-cancel', 'the safe choice has focus');
  await shot(page, 'confirm-delete');
  await page.click('#confirm-cancel');
  assert.equal(requests.filter((r) => r.method === 'DELETE').length, 0, 'cancel deletes nothing');
  await page.click('#delete');
  // The list reloads slowly: the deleted row must not come back while it does.
  let releaseList;
  const listHeld = new Promise((resolve) => { releaseList = resolve; });
  const listing = (url) => url.pathname === '/connections' && url.search !== '';
  await page.route(listing, async (route) => {
    await listHeld;
    await route.continue();
  });
  await page.click('#confirm-delete');
  await until(page, 'the list is back', () => !document.getElementById('list-view').hidden && document.getElementById('loading').hidden);
  await until(page, 'the deletion is announced', () => /Deleted “short-lived”/.test(document.getElementById('status').textContent));
  assert.equal(await page.getAttribute('#connections', 'aria-busy'), 'true', 'the list is still reloading');
  assert.equal(await page.locator('#connections li').count(), 0, 'the deleted row is gone before the list reloads');
  releaseList();
  await until(page, 'the list has reloaded', () => !document.getElementById('connections').hasAttribute('aria-busy'));
  await page.unroute(listing);
  const del = requests.find((r) => r.method === 'DELETE');
  assert.match((await del.headersReady)['if-match'] || '', /^"\d+"$/, 'If-Match carries the ETag');
  assert.equal(await page.locator('#connections li').count(), 0, 'the server no longer lists it');
  await collectViolations(page);
});

scenario('the whole add flow with the keyboard only', async () => {
  const page = await newPage('erin');
  await openList(page);
  const tabTo = async (predicate, what) => {
    for (let i = 0; i < 40; i += 1) {
      await page.keyboard.press('Tab');
      if (await page.evaluate(predicate)) return;
    }
    throw new Error(`${what} cannot be reached with Tab`);
  };
  await tabTo(() => document.activeElement.id === 'add', 'Add connection');
  await page.keyboard.press('Enter');
  await page.locator('#connection-dialog[open]').waitFor();
  assert.equal(await activeId(page), 'f-name');
  await page.keyboard.press('Escape');
  await until(page, 'Escape closes the dialog', () => !document.getElementById('connection-dialog').open);
  assert.equal(await activeId(page), 'add', 'focus returns to the button');
  await page.keyboard.press('Enter');
  await page.locator('#connection-dialog[open]').waitFor();
  await page.keyboard.type('keyboard');
  await page.keyboard.press('Tab');
  assert.equal(await activeId(page), 'f-url');
  await page.keyboard.press('Control+A');
  await page.keyboard.type(fakeCloud);
  await page.keyboard.press('Tab');
  assert.equal(await activeId(page), 'f-username');
  await page.keyboard.type(fake.email);
  await page.keyboard.press('Tab');
  assert.equal(await activeId(page), 'f-password');
  await page.keyboard.type(fake.api_token);
  // Focus stays inside the modal dialog all the way to Save.
  await tabTo(() => {
    if (!document.getElementById('connection-dialog').contains(document.activeElement)) throw new Error('focus left the dialog');
    return document.activeElement.id === 'save';
  }, 'Save and close');
  await page.keyboard.press('Enter');
  await until(page, 'the dialog closes', () => !document.getElementById('connection-dialog').open);
  assert.match(await text(page, '#status'), /Connection “keyboard” added/);
  await tabTo(() => document.activeElement.tagName === 'A' && document.activeElement.textContent === 'keyboard', 'the new row');
  await page.keyboard.press('Enter');
  await until(page, 'the view opens', () => document.activeElement.id === 'detail-title');
  await tabTo(() => document.activeElement.id === 'reverify', 'Re-verify');
  await page.keyboard.press('Enter');
  await until(page, 'the re-verification is announced', () => /Bitbucket accepted “keyboard”/.test(document.getElementById('status').textContent));
  await assertNoSecrets(page, page.context());
  await collectViolations(page);
});

scenario('a phone 360 px wide: nothing scrolls sideways', async () => {
  const page = await newPage('alice', { viewport: { width: 360, height: 780 } });
  await openList(page);
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 360), 'the list fits');
  await shot(page, 'phone-list', { fullPage: true });
  await openAdd(page);
  assert.ok(await page.evaluate(() => {
    const dialog = document.getElementById('connection-dialog');
    return dialog.getBoundingClientRect().width <= 360 && dialog.scrollWidth <= dialog.clientWidth;
  }), 'the dialog fits');
  await shot(page, 'phone-dialog');
  await runAxe(page, 'phone dialog');
  await collectViolations(page);
});

scenario('assets: under 60 KB, ETags answer 304, security headers on every file', async () => {
  const page = await newPage('frank');
  const sizes = {};
  page.on('response', async (response) => {
    const url = new URL(response.url());
    if (url.origin !== base || url.pathname.startsWith('/connections')) return;
    sizes[url.pathname] = (await response.body()).length;
  });
  await openList(page);
  await page.waitForLoadState('networkidle');
  const total = Object.values(sizes).reduce((a, b) => a + b, 0);
  console.log(`page size: ${total} bytes over ${Object.keys(sizes).length} files: ${JSON.stringify(sizes)}`);
  assert.ok(total < 60 * 1024, `the page weighs ${total} bytes`);
  for (const file of Object.keys(sizes)) {
    const first = await fetch(`${base}${file}`);
    assert.equal(first.status, 200, `GET ${file}: ${first.status} ${(await first.clone().text()).slice(0, 300)}`);
    const etag = first.headers.get('etag');
    assert.match(etag, /^"[0-9a-f]{32}"$/, `${file} has a strong ETag`);
    assert.equal(first.headers.get('cache-control'), 'no-cache');
    assert.equal(first.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(first.headers.get('referrer-policy'), 'no-referrer');
    assert.match(first.headers.get('content-security-policy'), /^default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'$/);
    const again = await fetch(`${base}${file}`, { headers: { 'if-none-match': etag } });
    assert.equal(again.status, 304, `${file} revalidates`);
  }
  const missing = await fetch(`${base}/nothing-here.js`);
  assert.equal(missing.status, 404);
  assert.equal(missing.headers.get('content-type'), 'application/problem+json');
  await collectViolations(page);
});

scenario('deployed sign-in: authorization code with PKCE (S256), token in memory only, 401 signs in again', async () => {
  if (!oidcBase) {
    console.log('  (no --oidc-base: skipped)');
    return;
  }
  const issuer = `http://127.0.0.1:${issuerPort}`;
  const authorizations = [];
  const issued = [];
  const codes = new Map();
  const cors = { 'access-control-allow-origin': '*' };
  const send = (res, status, body) => {
    res.writeHead(status, { 'content-type': 'application/json', ...cors });
    res.end(JSON.stringify(body));
  };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, issuer);
    if (url.pathname === '/.well-known/openid-configuration') {
      send(res, 200, {
        issuer,
        authorization_endpoint: `${issuer}/authorize`,
        token_endpoint: `${issuer}/token`,
        response_types_supported: ['code'],
        code_challenge_methods_supported: ['S256'],
      });
    } else if (url.pathname === '/authorize') {
      const query = Object.fromEntries(url.searchParams);
      authorizations.push(query);
      if (query.response_type !== 'code' || query.code_challenge_method !== 'S256' || !query.code_challenge || !query.state) {
        res.writeHead(400);
        res.end('PKCE with S256 is required');
        return;
      }
      const code = crypto.randomBytes(16).toString('hex');
      codes.set(code, query);
      const back = new URL(query.redirect_uri);
      back.searchParams.set('code', code);
      back.searchParams.set('state', query.state);
      res.writeHead(302, { location: back.toString() });
      res.end();
    } else if (url.pathname === '/token' && req.method === 'POST') {
      let body = '';
      req.on('data', (chunk) => { body += chunk; });
      req.on('end', () => {
        const form = new URLSearchParams(body);
        const query = codes.get(form.get('code'));
        codes.delete(form.get('code'));
        const challenge = crypto.createHash('sha256').update(form.get('code_verifier') || '').digest('base64url');
        const valid = query && form.get('grant_type') === 'authorization_code' && form.get('redirect_uri') === query.redirect_uri
          && form.get('client_id') === query.client_id && challenge === query.code_challenge;
        if (!valid) {
          send(res, 400, { error: 'invalid_grant' });
          return;
        }
        const token = `fake-access-${crypto.randomBytes(12).toString('hex')}`;
        issued.push(token);
        send(res, 200, { access_token: token, token_type: 'Bearer', expires_in: 300 });
      });
    } else {
      res.writeHead(404, cors);
      res.end();
    }
  });
  await new Promise((resolve) => server.listen(issuerPort, '127.0.0.1', resolve));
  try {
    // A link made by someone else, with their words as the provider's error: not shown.
    const lured = await newPage(null, { origin: oidcBase });
    await lured.goto(`${oidcBase}/?error=access_denied&error_description=${encodeURIComponent('Your account is locked. Call +1 555 0100')}&state=forged`);
    await until(lured, 'the forged answer is refused', () => !document.getElementById('signin-view').hidden);
    assert.doesNotMatch(await text(lured, '#signin-text'), /locked|555/, 'the attacker\'s text is not on the page');
    assert.match(await text(lured, '#signin-text'), /does not belong to this page/);
    await lured.close();

    const page = await newPage(null, { origin: oidcBase });
    await page.goto(`${oidcBase}/`);
    await until(page, 'the page is back from the provider with a token', () => document.getElementById('loading').hidden);
    assert.equal(authorizations.length, 1, 'one trip to the authorization endpoint');
    const [authorization] = authorizations;
    assert.equal(authorization.client_id, 'settings-page-test');
    assert.equal(authorization.code_challenge_method, 'S256');
    assert.match(authorization.code_challenge, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(authorization.redirect_uri, `${oidcBase}/`);
    assert.equal(authorization.scope, 'openid');
    assert.equal(issued.length, 1, 'the provider checked the verifier against the challenge and issued a token');
    assert.equal(page.url(), `${oidcBase}/`, 'the code is removed from the address');
    const call = requests.find((r) => r.url.startsWith(`${oidcBase}/connections`));
    assert.equal((await call.headersReady).authorization, `Bearer ${issued[0]}`, 'the API is called with the token');
    const stored = await page.evaluate(() => ({ local: localStorage.length, session: sessionStorage.length, cookie: document.cookie }));
    assert.deepEqual(stored, { local: 0, session: 0, cookie: '' }, 'the token is kept in memory only; state and verifier are gone');
    assert.ok(!(await page.content()).includes(issued[0]), 'the token is not in the page');

    // The API refusing the token sends the user to sign in again (once: a token
    // refused as soon as it is issued stops there instead of looping).
    await page.route(`${oidcBase}/connections**`, (route) => route.fulfill({
      status: 401,
      contentType: 'application/problem+json',
      body: JSON.stringify({ code: 'unauthenticated', title: 'Not signed in', detail: 'Sign in again.' }),
    }));
    await page.evaluate(() => { location.hash = '#/'; });
    await until(page, 'a 401 leads back to sign-in', () => !document.getElementById('signin-view').hidden);
    assert.equal(authorizations.length, 2, 'the page went to the provider again');
    assert.match(await text(page, '#signin-text'), /did not accept the token/);
    await collectViolations(page);
  } finally {
    server.close();
  }
});

scenario('Connect with Bitbucket with the keyboard only: approve, back on the new connection; a denial says what to do', async () => {
  assert.ok(oauthBase, 'web_page.rs passes --oauth-base');
  const fakeOrigin = new URL(fakeCloud).origin;
  const page = await newPage('olivia', { origin: oauthBase });
  await openList(page, oauthBase);
  const connect = page.locator('#oauth-connect button');
  assert.deepEqual(await connect.allInnerTexts(), ['Connect with Bitbucket Cloud', 'Connect with 127.0.0.1'], 'one button a registered server');
  await runAxe(page, 'oauth-offered');
  // From "Add connection", one Tab reaches Connect; Enter goes to Bitbucket and back.
  await page.locator('#add').focus();
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Connect with Bitbucket Cloud');
  await page.keyboard.press('Enter');
  await until(page, 'back from Bitbucket on the new connection', () => !document.getElementById('detail-view').hidden
    && document.getElementById('detail-title').textContent.startsWith('Bitbucket Cloud'));
  assert.equal(await text(page, '#detail-title'), 'Bitbucket Cloud (jdoe)', 'named after the server and the account');
  assert.equal(await activeId(page), 'detail-title', 'focus lands on the new connection');
  assert.match(await text(page, '#status'), /Connected “Bitbucket Cloud \(jdoe\)” with Bitbucket\./);
  assert.match(await text(page, '#detail-body'), /Connect with Bitbucket \(OAuth\)/);
  assert.equal(new URL(page.url()).search, '', 'the code and state are gone from the address');
  const stored = await page.evaluate(() => ({ local: localStorage.length, session: sessionStorage.length }));
  assert.deepEqual(stored, { local: 0, session: 0 }, 'nothing of the round trip stays in storage');
  const callback = requests.find((r) => r.method === 'POST' && r.url === `${oauthBase}/oauth/callbacks`);
  assert.ok(callback && /"code":/.test(callback.body) && /"state":/.test(callback.body), 'the page handed over code and state');
  await runAxe(page, 'oauth-connected');
  await shot(page, 'oauth-connected');

  // Revoked on Bitbucket: re-verify says so, and Reconnect runs the round trip again,
  // keeping the connection's id.
  const id = new URL(page.url()).hash.split('/').pop();
  assert.equal((await fetch(`${fakeOrigin}/__oauth/revoke-all`, { method: 'POST' })).status, 204);
  await page.locator('#reverify').focus();
  await page.keyboard.press('Enter');
  await until(page, 'the revocation is shown', () => document.getElementById('reconnect') !== null);
  assert.match(await text(page, '#detail-body'), /no longer accepts this connection's authorization/);
  await runAxe(page, 'oauth-revoked');
  await shot(page, 'oauth-revoked');
  await page.locator('#reconnect').focus();
  await page.keyboard.press('Enter');
  await until(page, 'back from Bitbucket, reconnected', () => /Reconnected/.test(document.getElementById('status').textContent)
    && !document.getElementById('detail-view').hidden);
  assert.equal(new URL(page.url()).hash, `#/connections/${id}`, 'the same connection');
  assert.match(await text(page, '#detail-badge'), /Verified/);

  // Denied on Bitbucket: back on the list, with what happened and what to do.
  const denied = await fetch(`${fakeOrigin}/__oauth/deny-next`, { method: 'POST' });
  assert.equal(denied.status, 204);
  await openList(page, oauthBase);
  await page.locator('#add').focus();
  await page.keyboard.press('Tab');
  await page.keyboard.press('Enter');
  await until(page, 'the denial is shown', () => !document.getElementById('page-problem').hidden);
  assert.match(await text(page, '#page-problem'), /did not grant access on Bitbucket, so nothing was connected/);
  assert.equal(await activeId(page), 'list-title', 'focus on the list, under the message');
  assert.equal(await page.locator('#connections li').count(), 1, 'nothing was added');
  assert.equal(new URL(page.url()).search, '', 'the error is gone from the address');
  await runAxe(page, 'oauth-denied');
  await shot(page, 'oauth-denied');
  await collectViolations(page);
});

// ---------------------------------------------------------------- run

let failed = 0;
for (const { name, body } of scenarios) {
  const began = Date.now();
  const opened = contexts.length;
  try {
    await body();
    console.log(`ok - ${name} (${((Date.now() - began) / 1000).toFixed(1)} s)`);
  } catch (error) {
    failed += 1;
    console.log(`not ok - ${name}\n  ${String(error && error.stack || error).split('\n').join('\n  ')}`);
  } finally {
    // A scenario's pages end with it: left open, their idle connections piled up on the local server.
    for (const context of contexts.splice(opened)) await context.close().catch(() => {});
  }
}

const findings = [];
const serious = axeFindings.filter((f) => f.impact === 'serious' || f.impact === 'critical');
console.log(`axe-core ${JSON.parse(fs.readFileSync(path.join(here, 'node_modules/axe-core/package.json'), 'utf8')).version}: ${axeFindings.length} violations in ${axeStates.length} states (${axeStates.join(', ')}), ${serious.length} serious or critical`);
for (const finding of axeFindings) console.log(`  axe [${finding.impact}] ${finding.state}: ${finding.id} (${finding.nodes}) ${finding.help} ${finding.targets.join(', ')}`);
if (serious.length) findings.push(`${serious.length} serious or critical accessibility violations`);
const leaked = consoleMessages.filter((m) => SECRETS.some((s) => m.includes(s)));
if (leaked.length) findings.push(`secrets in the console: ${leaked.length}`);
const errors = consoleMessages.filter((m) => m.startsWith('[error]') && !/status of (401|404|409|412|422|429|5\d\d)/.test(m));
if (errors.length) findings.push(`console errors: ${errors.join(' | ')}`);
if (pageErrors.length) findings.push(`uncaught errors: ${pageErrors.join(' | ')}`);
if (cspViolations.length) findings.push(`CSP violations: ${cspViolations.join(' | ')}`);
console.log(`console: ${consoleMessages.length} messages, none with a secret: ${leaked.length === 0}`);
for (const message of consoleMessages) if (!leaked.includes(message)) console.log(`  ${message.slice(0, 200)}`);
for (const finding of findings) console.log(`not ok - ${finding}`);
failed += findings.length;

for (const context of contexts) await context.close().catch(() => {});
await browser.close();
const passed = scenarios.length - (failed - findings.length);
console.log(`page tests: ${passed} of ${scenarios.length} scenarios ok, ${failed} problems, ${((Date.now() - started) / 1000).toFixed(1)} s; screenshots in ${path.relative(process.cwd(), shots)}/`);
process.exit(failed ? 1 : 0);
