// Settings › Integrations › Personal connections: list, add, view, edit, re-verify, delete.
// Secrets: typed into one password field, sent once, cleared after every attempt;
// never stored, logged or put into the page's text.

import { call, connectionPath, configureApi, listAll, Problem } from './api.js';
import * as auth from './auth.js';
import {
  DEFAULT_URL, KIND_LABELS, PROVIDER_LABELS, STATUS_LABELS, capabilityLines, capabilitySummary, inferKind,
} from './kinds.js';

const $ = (id) => document.getElementById(id);

/** Builds an element; text is always text (never parsed as HTML). */
function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') element.className = value;
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeZone: 'UTC' });

function when(text, format = dateTime) {
  if (!text) return '—';
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? text : h('time', { datetime: text }, format.format(date));
}

const state = {
  config: { api_base: '', oidc: null, bitbucket_oauth: [] },
  connections: [],
  /** Whether `connections` is what the server last listed (not merely empty because never loaded). */
  listLoaded: false,
  /** Which list load is the latest: an older one that answers late draws nothing. */
  listGeneration: 0,
  current: null,
  etag: null,
  lastId: null,
  keepStatus: false,
  freshToken: false,
  dialog: { mode: 'add', kindTouched: false, busy: false },
};

// ---------------------------------------------------------------- messages

/** A polite announcement; `tone` 'bad' when it reports a failure. It survives the
 *  navigation the same action starts, and is cleared by the next one. */
function announce(text, tone = 'ok') {
  const box = $('status');
  box.textContent = '';
  box.dataset.tone = tone;
  box.textContent = text;
  state.keepStatus = true;
}

function showPageProblem(problem) {
  const box = $('page-problem');
  box.replaceChildren(h('h2', {}, problem.title || 'Something went wrong'), h('p', {}, problem.detail || String(problem)));
  box.hidden = false;
}

function hidePageProblem() {
  $('page-problem').hidden = true;
  $('page-problem').replaceChildren();
}

// ---------------------------------------------------------------- list and detail

function badge(status) {
  return h('span', { class: `badge badge-${status}` }, STATUS_LABELS[status] || status);
}

const DAY_MS = 24 * 60 * 60 * 1000;
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

/** "3 hours ago by pr-worker (git)", from when a worker last obtained the credentials. */
function lastUsed(used) {
  if (!used || !used.at) return 'Not used yet';
  const elapsed = Date.now() - new Date(used.at).getTime();
  if (Number.isNaN(elapsed)) return used.at;
  const [amount, unit] = elapsed < 60 * 60 * 1000 ? [Math.round(elapsed / 60000), 'minute']
    : elapsed < DAY_MS ? [Math.round(elapsed / 3600000), 'hour'] : [Math.round(elapsed / DAY_MS), 'day'];
  return h('span', {}, h('time', { datetime: used.at }, relative.format(-amount, unit)), ` by ${used.caller} (${used.purpose})`);
}

/** Used once and not since, or never used, for 90 days. */
function unusedFor90Days(c) {
  const since = new Date((c.last_used && c.last_used.at) || c.created_at).getTime();
  return Date.now() - since > 90 * DAY_MS;
}

function fact(term, value) {
  return h('div', {}, h('dt', {}, term), h('dd', {}, value));
}

function accountLabel(connection) {
  const account = connection.account;
  if (account) {
    const name = account.display_name;
    const login = account.username;
    if (name && login && name !== login) return `${name} (${login})`;
    return name || login || connection.username || '—';
  }
  if (connection.username) return connection.username;
  if (connection.resource) return `Token for ${connection.resource}`;
  return '—';
}

function server(connection) {
  return `Bitbucket ${PROVIDER_LABELS[connection.provider] || connection.provider}`;
}

function card(connection) {
  const invalid = connection.status === 'invalid';
  return h(
    'li',
    { class: 'card', 'data-id': connection.id },
    h(
      'div',
      { class: 'card-head' },
      h('h2', {}, h('a', { href: `#/connections/${connection.id}` }, connection.name)),
      badge(connection.status),
    ),
    h(
      'dl',
      { class: 'facts' },
      fact('Server', server(connection)),
      fact('Account', accountLabel(connection)),
      fact('Last verified', when(connection.verified_at)),
      connection.expires_at ? fact(connection.status === 'expired' ? 'Expired' : 'Expires', when(connection.expires_at, dateOnly)) : null,
    ),
    h('p', { class: 'caps' }, invalid ? connection.status_detail || 'Bitbucket no longer accepts these credentials.' : capabilitySummary(connection.capabilities)),
  );
}

function renderList() {
  $('connections').replaceChildren(...state.connections.map(card));
  $('empty').hidden = state.connections.length > 0;
  $('loading').hidden = true;
}

function renderDetail() {
  const c = state.current;
  $('detail-title').textContent = c.name;
  $('detail-badge').replaceChildren(badge(c.status));
  document.title = `${c.name} · Personal connections`;
  const parts = [];
  if (c.status === 'invalid' && c.credential_type === 'oauth') {
    const reconnect = h('button', { type: 'button', id: 'reconnect', class: 'primary' }, 'Reconnect with Bitbucket');
    reconnect.addEventListener('click', () => connectWithBitbucket(c.url, c.id));
    parts.push(h('div', { class: 'problem' },
      h('p', {}, c.status_detail || 'Bitbucket no longer accepts this connection.'),
      h('p', {}, 'Reconnect to approve access on Bitbucket again; the connection keeps its name and id.'),
      reconnect));
  } else if (c.status === 'invalid') {
    parts.push(h('div', { class: 'problem' },
      h('p', {}, c.status_detail || 'Bitbucket refused these credentials the last time they were checked.'),
      h('p', {}, 'Edit the connection to enter a new token, then save.')));
  } else if (c.status === 'expired' || c.status === 'expiring') {
    parts.push(h('div', { class: 'problem' }, h('p', {}, c.status === 'expired'
      ? 'The token has passed its expiry date. Create a new one and enter it with Edit.'
      : 'The token expires soon. Create a new one and enter it with Edit before it stops working.')));
  }
  parts.push(h('div', { class: 'panel' },
    h('h2', {}, c.status === 'invalid' ? 'What it could do when Bitbucket last accepted it' : 'What it can do'),
    h('p', {}, capabilitySummary(c.capabilities)),
    h('ul', { class: 'capabilities' }, capabilityLines(c.capabilities).map((line) => h('li', {}, `${line.label}: ${line.text}`)))));
  if (unusedFor90Days(c)) {
    parts.push(h('div', { class: 'panel' }, h('h2', {}, 'Not used for 90 days'),
      h('p', {}, 'No worker has used this connection for 90 days. If nothing needs it any more, delete it: a token nobody uses is only a risk.')));
  }
  // Warnings come from the last success: while the connection is unusable they are not true.
  const usable = c.status !== 'invalid' && c.status !== 'expired';
  if (usable && Array.isArray(c.warnings) && c.warnings.length) {
    parts.push(h('div', { class: 'panel' }, h('h2', {}, 'Notes'), h('ul', { class: 'warnings' }, c.warnings.map((w) => h('li', {}, w.detail)))));
  }
  parts.push(h('div', { class: 'panel' }, h('h2', {}, 'Details'), h('dl', { class: 'facts' },
    fact('Server', server(c)),
    fact('Server URL', c.url),
    fact('Kind', KIND_LABELS[c.credential_type] || c.credential_type),
    c.username ? fact('Email or username', c.username) : null,
    c.resource ? fact('Resource', c.resource) : null,
    fact('Account', accountLabel(c)),
    c.git_username ? fact('Git username', h('code', {}, c.git_username)) : null,
    fact('Expires', c.expires_at ? when(c.expires_at, dateOnly) : 'Not set'),
    fact('Last verified', when(c.verified_at)),
    fact('Last used', lastUsed(c.last_used)),
    fact('Added', when(c.created_at)))));
  $('detail-body').replaceChildren(...parts);
}

function showView(name) {
  $('list-view').hidden = name !== 'list';
  $('detail-view').hidden = name !== 'detail';
  $('signin-view').hidden = name !== 'signin';
}

async function showList(focus) {
  showView('list');
  document.title = 'Personal connections · Integrations · Settings';
  $('connections').setAttribute('aria-busy', 'true');
  const generation = ++state.listGeneration;
  try {
    const connections = await listAll();
    if (generation !== state.listGeneration) return;
    state.connections = connections;
    state.listLoaded = true;
    state.freshToken = false;
    renderList();
  } catch (problem) {
    if (generation !== state.listGeneration) return;
    $('loading').hidden = true;
    if (problem.status !== 401) showPageProblem(problem);
  } finally {
    if (generation === state.listGeneration) $('connections').removeAttribute('aria-busy');
  }
  if (!focus) return;
  const link = state.lastId && document.querySelector(`[data-id="${CSS.escape(state.lastId)}"] a`);
  (link || $('list-title')).focus();
}

async function showDetail(id, focus) {
  showView('detail');
  state.lastId = id;
  try {
    const { data, etag } = await call('GET', connectionPath(id));
    state.current = data;
    state.etag = etag;
    renderDetail();
    if (focus) $('detail-title').focus();
  } catch (problem) {
    if (problem.status === 404) {
      announce('That connection no longer exists.');
      location.hash = '#/';
    } else if (problem.status !== 401) {
      $('detail-title').textContent = 'Connection';
      $('detail-body').replaceChildren();
      showPageProblem(problem);
    }
  }
}

async function route(event) {
  const focus = Boolean(event);
  const hash = location.hash;
  if (event && !state.keepStatus) $('status').textContent = '';
  state.keepStatus = false;
  const match = /^#\/connections\/([0-9a-f-]{36})$/.exec(hash);
  if (match) {
    hidePageProblem();
    await showDetail(match[1], focus);
  } else if (hash === '' || hash === '#' || hash === '#/') {
    hidePageProblem();
    await showList(focus);
  }
}

// ---------------------------------------------------------------- the add / edit dialog

const dialog = $('connection-dialog');
const form = $('connection-form');
const fields = {
  name: $('f-name'),
  url: $('f-url'),
  username: $('f-username'),
  password: $('f-password'),
  credential_type: $('f-kind'),
  resource: $('f-resource'),
  expires_at: $('f-expires'),
};
const LABELS = {
  name: 'Name',
  url: 'Server URL',
  username: 'Email or username',
  password: 'Token or password',
  credential_type: 'Kind',
  resource: 'Resource',
  expires_at: 'Expiry date',
};

function updateKind() {
  if (state.dialog.kindTouched) return;
  fields.credential_type.value = inferKind(fields.url.value, fields.username.value, fields.resource.value);
}

function clearErrors() {
  for (const input of Object.values(fields)) {
    input.removeAttribute('aria-invalid');
    input.setAttribute('aria-describedby', `${input.id}-hint`);
    const error = $(`${input.id}-error`);
    error.hidden = true;
    error.textContent = '';
  }
  $('form-problem').hidden = true;
  $('form-problem').replaceChildren();
}

/** "is required" reads after the field's name; a sentence of its own stands alone. */
function fieldMessage(field, detail) {
  const text = String(detail || 'is not valid').trim().replace(/\.$/, '');
  const predicate = /^(is|are|was|were|must|has|have|does|do|cannot|can|should|needs|contains|may|belongs)\b/.test(text);
  const sentence = predicate ? `${LABELS[field]} ${text}` : text.charAt(0).toUpperCase() + text.slice(1);
  return `${sentence}.`;
}

function markField(field, detail) {
  const input = fields[field];
  const error = $(`${input.id}-error`);
  error.textContent = fieldMessage(field, detail);
  error.hidden = false;
  input.setAttribute('aria-invalid', 'true');
  input.setAttribute('aria-describedby', `${input.id}-hint ${input.id}-error`);
}

function showFormProblem(problem) {
  const atFields = problem.errors.filter((e) => fields[e.field]);
  const elsewhere = problem.errors.filter((e) => !fields[e.field]);
  for (const error of atFields) markField(error.field, error.detail);
  const onlyFields = atFields.length > 0 && elsewhere.length === 0 && problem.code === 'validation_failed';
  const parts = [h('h3', {}, onlyFields ? 'Check the fields marked below' : problem.title)];
  if (!onlyFields) parts.push(h('p', {}, problem.detail));
  for (const error of elsewhere) parts.push(h('p', {}, `${error.field}: ${error.detail}`));
  if (problem.missingScopes.length) {
    parts.push(h('p', {}, 'Missing scopes:'), h('ul', { class: 'missing-scopes' }, problem.missingScopes.map((s) => h('li', {}, h('code', {}, s)))));
  }
  const box = $('form-problem');
  box.replaceChildren(...parts);
  box.hidden = false;
  const first = atFields[0];
  (first ? fields[first.field] : box).focus();
}

function setBusy(busy, text) {
  state.dialog.busy = busy;
  form.setAttribute('aria-busy', String(busy));
  const save = $('save');
  save.disabled = busy;
  save.textContent = busy ? text : 'Save and close';
  $('form-progress').textContent = busy ? text : '';
}

function openDialog(mode) {
  state.dialog = { mode, kindTouched: false, busy: false };
  form.reset();
  clearErrors();
  setBusy(false);
  $('confirm-account-field').hidden = true;
  $('copy-status').textContent = '';
  if (mode === 'add') {
    $('dialog-title').textContent = 'Add connection';
    fields.url.value = DEFAULT_URL;
    $('f-password-hint').textContent = 'Checked with Bitbucket, then stored encrypted. It is never shown again.';
    updateKind();
  } else {
    const c = state.current;
    $('dialog-title').textContent = 'Edit connection';
    fields.name.value = c.name;
    fields.url.value = c.url;
    fields.username.value = c.username || '';
    fields.credential_type.value = c.credential_type;
    fields.resource.value = c.resource || '';
    fields.expires_at.value = (c.expires_at || '').slice(0, 10);
    $('f-password-hint').textContent = 'Leave empty to keep the current one. Needed again if you change the server URL.';
  }
  dialog.showModal();
  fields.name.focus();
}

function values() {
  return {
    name: fields.name.value.trim(),
    url: fields.url.value.trim(),
    username: fields.username.value.trim(),
    password: fields.password.value,
    kind: fields.credential_type.value,
    resource: fields.resource.value.trim(),
    expires: fields.expires_at.value,
  };
}

function addBody(v) {
  const body = { name: v.name, url: v.url || DEFAULT_URL, password: v.password };
  if (v.username) body.username = v.username;
  if (state.dialog.kindTouched) body.credential_type = v.kind;
  if (v.resource) body.resource = v.resource;
  if (v.expires) body.expires_at = v.expires;
  return body;
}

function patchBody(v, c) {
  const body = {};
  if (v.name !== c.name) body.name = v.name;
  if (v.url && v.url !== c.url) body.url = v.url;
  if (v.username && v.username !== (c.username || '')) body.username = v.username;
  // An empty secret keeps the stored one.
  if (v.password) body.password = v.password;
  if (state.dialog.kindTouched && v.kind !== c.credential_type) body.credential_type = v.kind;
  if (v.resource && v.resource !== (c.resource || '')) body.resource = v.resource;
  if (v.expires !== (c.expires_at || '').slice(0, 10)) body.expires_at = v.expires || null;
  if (Object.keys(body).length && $('f-confirm-account').checked) body.confirm_account_change = true;
  return body;
}

const CHECKED = ['url', 'username', 'password', 'credential_type', 'resource'];

async function save() {
  if (state.dialog.busy) return;
  clearErrors();
  const { mode } = state.dialog;
  const v = values();
  const missing = [];
  if (!v.name) missing.push({ field: 'name', detail: 'is required' });
  if (mode === 'add' && !v.password) missing.push({ field: 'password', detail: 'is required' });
  if (missing.length) {
    showFormProblem(new Problem(422, { code: 'validation_failed', errors: missing }));
    return;
  }
  const body = mode === 'add' ? addBody(v) : patchBody(v, state.current);
  if (mode === 'edit' && !Object.keys(body).length) {
    dialog.close();
    announce('Nothing changed.');
    return;
  }
  const checks = CHECKED.some((key) => key in body);
  setBusy(true, checks ? 'Checking with Bitbucket…' : 'Saving…');
  try {
    if (mode === 'add') {
      const { data } = await call('POST', '/connections', { body });
      fields.password.value = '';
      dialog.close();
      state.lastId = data.id;
      const note = Array.isArray(data.warnings) && data.warnings.length ? ` ${data.warnings[0].detail}` : '';
      announce(`Connection “${data.name}” added: Bitbucket accepted the credentials.${note}`);
      if (location.hash.startsWith('#/connections/')) location.hash = '#/';
      else await showList(false);
    } else {
      const { data, etag } = await call('PATCH', connectionPath(state.current.id), { body, etag: state.etag });
      fields.password.value = '';
      dialog.close();
      state.current = data;
      state.etag = etag;
      renderDetail();
      announce(checks ? `Saved “${data.name}”: Bitbucket accepted the credentials.` : `Saved “${data.name}”.`);
    }
  } catch (caught) {
    fields.password.value = '';
    const problem = caught instanceof Problem ? caught : new Problem(0, { detail: String(caught) });
    if (problem.code === 'version_mismatch' && state.current) {
      try {
        const { data, etag } = await call('GET', connectionPath(state.current.id));
        state.current = data;
        state.etag = etag;
        renderDetail();
      } catch {
        // the message below still says what happened
      }
    }
    if (problem.code === 'account_mismatch') $('confirm-account-field').hidden = false;
    setBusy(false);
    if (problem.status !== 401) showFormProblem(problem);
    return;
  }
  setBusy(false);
}

// ---------------------------------------------------------------- re-verify and delete

async function reverify() {
  const button = $('reverify');
  const c = state.current;
  button.disabled = true;
  button.textContent = 'Checking with Bitbucket…';
  $('detail-view').setAttribute('aria-busy', 'true');
  hidePageProblem();
  try {
    const { data, etag } = await call('POST', `${connectionPath(c.id)}/verify`);
    state.current = data;
    state.etag = etag;
    renderDetail();
    if (data.status === 'invalid') announce(`Bitbucket refused “${data.name}”. ${data.status_detail || ''}`.trim(), 'bad');
    else announce(`Bitbucket accepted “${data.name}”: it is ${STATUS_LABELS[data.status].toLowerCase()}.`);
  } catch (problem) {
    if (problem.status !== 401) showPageProblem(problem);
  } finally {
    button.disabled = false;
    button.textContent = 'Re-verify';
    $('detail-view').removeAttribute('aria-busy');
    button.focus();
  }
}

function askDelete() {
  const confirm = $('confirm-dialog');
  $('confirm-title').textContent = `Delete “${state.current.name}”?`;
  $('confirm-text').textContent = 'The product will no longer be able to use it to import code or open pull requests. This cannot be undone.';
  confirm.returnValue = '';
  confirm.showModal();
}

/** Drops a connection that is gone from the list already drawn, so the list never
 *  shows it again while it reloads. */
function forget(id) {
  state.lastId = null;
  // Opened straight at a connection, there is no drawn list to correct (and an empty
  // one would wrongly say there are no connections while the list loads).
  if (!state.listLoaded) return;
  state.connections = state.connections.filter((c) => c.id !== id);
  renderList();
}

async function deleteCurrent() {
  const c = state.current;
  try {
    await call('DELETE', connectionPath(c.id), { etag: state.etag });
    forget(c.id);
    announce(`Deleted “${c.name}”.`);
    location.hash = '#/';
  } catch (problem) {
    if (problem.status === 404) {
      forget(c.id);
      announce(`“${c.name}” was already deleted.`);
      location.hash = '#/';
    } else if (problem.status !== 401) {
      showPageProblem(problem);
      if (problem.code === 'version_mismatch') await showDetail(c.id, false);
    }
  }
}

async function copyScopes() {
  const list = $('scopes');
  const text = [...list.querySelectorAll('code')].map((code) => code.textContent).join('\n');
  try {
    await navigator.clipboard.writeText(text);
    $('copy-status').textContent = 'Copied.';
  } catch {
    const range = document.createRange();
    range.selectNodeContents(list);
    const selection = getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    $('copy-status').textContent = 'Selected: press Ctrl+C to copy.';
  }
}

// ---------------------------------------------------------------- sign-in

function showSignIn(text, canSignIn) {
  showView('signin');
  $('signin-text').textContent = text;
  $('signin').hidden = !canSignIn;
  $('signin-title').focus();
}

async function beginSignIn() {
  try {
    await auth.signIn(state.config.oidc);
  } catch (error) {
    showSignIn(`Sign-in could not start: ${error.message}`, true);
  }
}

function unauthenticated() {
  auth.forget();
  if (dialog.open) dialog.close();
  if (!state.config.oidc) {
    showSignIn('The service did not accept this request. This page has no sign-in configured: a local run serves only this machine.', false);
  } else if (state.freshToken) {
    // A token just issued and already refused: redirecting again would loop.
    showSignIn('The service did not accept the token from the sign-in service. Check that the stack\'s OidcClientId is among its JwtAudience.', true);
  } else {
    beginSignIn();
  }
}

// ---------------------------------------------------------------- Connect with Bitbucket (OAuth)
// The service keeps the flow's state and PKCE verifier; the page remembers only the
// state (sessionStorage, until Bitbucket sends the browser back), to tell Bitbucket's
// return from the sign-in service's, and what Bitbucket sent until the page can call
// the API with its token. Both are gone once the callback is handed over.

const OAUTH_PENDING = 'bitbucket-oauth-pending';
const OAUTH_RETURN = 'bitbucket-oauth-return';

function renderConnectButtons() {
  const buttons = (state.config.bitbucket_oauth || []).map((server) => {
    const button = h('button', { type: 'button', 'data-url': server.url }, `Connect with ${server.label}`);
    button.addEventListener('click', () => connectWithBitbucket(server.url));
    return button;
  });
  $('oauth-connect').replaceChildren(...buttons);
}

async function connectWithBitbucket(url, connectionId) {
  hidePageProblem();
  try {
    const body = connectionId ? { url, connection_id: connectionId } : { url };
    const { data } = await call('POST', '/oauth/flows', { body });
    const target = new URL(data.authorize_url);
    sessionStorage.setItem(OAUTH_PENDING, target.searchParams.get('state') || '');
    announce('Taking you to Bitbucket to approve access…');
    location.assign(target.toString());
  } catch (problem) {
    if (problem.status !== 401) showPageProblem(problem);
  }
}

/** Back from Bitbucket (`?state=` of the flow this page started): keep what it sent. */
function takeBitbucketReturn() {
  const params = new URLSearchParams(location.search);
  const pending = sessionStorage.getItem(OAUTH_PENDING);
  if (!pending || params.get('state') !== pending) return;
  sessionStorage.removeItem(OAUTH_PENDING);
  const sent = {};
  for (const key of ['state', 'code', 'error', 'error_description']) {
    if (params.has(key)) sent[key] = params.get(key);
  }
  sessionStorage.setItem(OAUTH_RETURN, JSON.stringify(sent));
  history.replaceState(null, '', `${location.pathname}${location.hash}`);
}

/** Hands Bitbucket's answer to the service: `{ id }` of the connection, `{ failed }`
 *  (the problem is shown), or null when the page did not come back from Bitbucket. */
async function finishBitbucketReturn() {
  const saved = sessionStorage.getItem(OAUTH_RETURN);
  if (!saved) return null;
  sessionStorage.removeItem(OAUTH_RETURN);
  let body;
  try {
    body = JSON.parse(saved);
  } catch {
    return null;
  }
  announce('Finishing the connection with Bitbucket…');
  try {
    const { data, status } = await call('POST', '/oauth/callbacks', { body });
    announce(status === 201 ? `Connected “${data.name}” with Bitbucket.` : `Reconnected “${data.name}” with Bitbucket.`);
    return { id: data.id };
  } catch (problem) {
    $('status').textContent = '';
    if (problem.status !== 401) showPageProblem(problem);
    return { failed: true };
  }
}

// ---------------------------------------------------------------- start

function wire() {
  $('add').addEventListener('click', () => openDialog('add'));
  $('edit').addEventListener('click', () => openDialog('edit'));
  $('reverify').addEventListener('click', reverify);
  $('delete').addEventListener('click', askDelete);
  $('confirm-dialog').addEventListener('close', () => {
    if ($('confirm-dialog').returnValue === 'delete') deleteCurrent();
  });
  $('cancel').addEventListener('click', () => dialog.close());
  $('dialog-close').addEventListener('click', () => dialog.close());
  dialog.addEventListener('cancel', (event) => {
    if (state.dialog.busy) event.preventDefault();
  });
  dialog.addEventListener('close', () => {
    fields.password.value = '';
  });
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    save();
  });
  for (const input of [fields.url, fields.username, fields.resource]) input.addEventListener('input', updateKind);
  fields.credential_type.addEventListener('change', () => {
    state.dialog.kindTouched = true;
  });
  $('copy-scopes').addEventListener('click', copyScopes);
  $('signin').addEventListener('click', beginSignIn);
  window.addEventListener('hashchange', route);
}

async function start() {
  wire();
  takeBitbucketReturn();
  try {
    const response = await fetch('/config.json', { cache: 'no-cache', credentials: 'omit' });
    if (response.ok) state.config = await response.json();
  } catch {
    // no configuration: a local run without sign-in
  }
  configureApi({ base: state.config.api_base || '', token: auth.token, unauthenticated });
  if (state.config.oidc) {
    const failure = await auth.finishSignIn(state.config.oidc);
    if (failure) {
      showSignIn(failure, true);
      return;
    }
    if (!auth.token()) {
      showSignIn('Taking you to sign in…', false);
      await beginSignIn();
      return;
    }
    state.freshToken = true;
  }
  renderConnectButtons();
  const returned = await finishBitbucketReturn();
  if (returned && returned.id) {
    history.replaceState(null, '', `#/connections/${returned.id}`);
    await showDetail(returned.id, true);
    return;
  }
  if (returned && returned.failed) {
    // The problem stays on the list, which says what to do next.
    history.replaceState(null, '', '#/');
    await showList(true);
    return;
  }
  await route();
}

start();
