// Sign-in for the deployed page: OpenID Connect authorization code with PKCE (S256).
// The access token lives in this module's memory only: never in storage or cookies.
// Only `state` and the PKCE `code_verifier` go to sessionStorage, for the redirect
// round trip to the identity provider and back, and are removed on return.

const PENDING = 'connections.oidc.pending';
let accessToken = null;

export const token = () => accessToken;

function base64url(bytes) {
  let text = '';
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function randomText() {
  return base64url(crypto.getRandomValues(new Uint8Array(32)));
}

async function challengeOf(verifier) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

function redirectUri() {
  return `${location.origin}/`;
}

function trusted(endpoint) {
  const url = new URL(endpoint);
  const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
  return url.protocol === 'https:' || (url.protocol === 'http:' && loopback);
}

/** The provider's endpoints from its discovery document, checked against the issuer. */
async function discover(oidc) {
  const issuer = oidc.issuer.replace(/\/+$/, '');
  const response = await fetch(`${issuer}/.well-known/openid-configuration`, { credentials: 'omit' });
  if (!response.ok) throw new Error(`The sign-in service answered ${response.status}.`);
  const doc = await response.json();
  if (String(doc.issuer || '').replace(/\/+$/, '') !== issuer) {
    throw new Error('The sign-in service describes another issuer.');
  }
  for (const endpoint of [doc.authorization_endpoint, doc.token_endpoint]) {
    if (!endpoint || !trusted(endpoint)) throw new Error('The sign-in service gave an unusable endpoint.');
  }
  return doc;
}

/** Leaves for the provider's login page; the promise never resolves (the page unloads). */
export async function signIn(oidc) {
  const doc = await discover(oidc);
  const state = randomText();
  const verifier = randomText();
  sessionStorage.setItem(PENDING, JSON.stringify({ state, verifier }));
  const url = new URL(doc.authorization_endpoint);
  url.searchParams.set('response_type', 'code');
  url.searchParams.set('client_id', oidc.client_id);
  url.searchParams.set('redirect_uri', redirectUri());
  url.searchParams.set('scope', oidc.scopes || 'openid');
  url.searchParams.set('state', state);
  url.searchParams.set('code_challenge', await challengeOf(verifier));
  url.searchParams.set('code_challenge_method', 'S256');
  location.assign(url.toString());
  return new Promise(() => {});
}

/**
 * On return from the provider (`?code=…&state=…`), exchanges the code for a token.
 * Returns null when there was nothing to finish or it worked, else the reason it failed.
 */
export async function finishSignIn(oidc) {
  const params = new URLSearchParams(location.search);
  if (!params.has('code') && !params.has('error')) return null;
  const pending = sessionStorage.getItem(PENDING);
  sessionStorage.removeItem(PENDING);
  history.replaceState(null, '', `${location.pathname}${location.hash}`);
  let saved = null;
  try {
    saved = JSON.parse(pending || 'null');
  } catch {
    saved = null;
  }
  // Anyone can link here with ?error=…&error_description=<their text>: only an answer
  // to the request this page sent (its state) may put the provider's words on it.
  if (!saved || saved.state !== params.get('state')) {
    return 'The sign-in answer does not belong to this page. Sign in again.';
  }
  if (params.has('error')) {
    return `The sign-in service refused: ${params.get('error_description') || params.get('error')}.`;
  }
  try {
    const doc = await discover(oidc);
    const response = await fetch(doc.token_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      credentials: 'omit',
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code: params.get('code'),
        redirect_uri: redirectUri(),
        client_id: oidc.client_id,
        code_verifier: saved.verifier,
      }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok || typeof body.access_token !== 'string') {
      return `The sign-in service did not issue a token (${body.error || response.status}).`;
    }
    accessToken = body.access_token;
    return null;
  } catch (error) {
    return error instanceof Error ? error.message : 'Sign-in failed.';
  }
}

/** Forgets the token (after the API said it no longer accepts it). */
export function forget() {
  accessToken = null;
}
