// The connections API: JSON in and out, ETags for If-Match, RFC 9457 problems as errors.
// Request and response bodies are never logged: a request body can hold a secret.

let base = '';
let currentToken = () => null;
let onUnauthenticated = () => {};

export function configureApi(options) {
  base = options.base || '';
  currentToken = options.token || (() => null);
  onUnauthenticated = options.unauthenticated || (() => {});
}

/** A refused request: `code`, `detail`, `errors[]` (field, detail), `missing_scopes[]`. */
export class Problem extends Error {
  constructor(status, body) {
    const problem = body && typeof body === 'object' ? body : {};
    super(problem.detail || `The service answered ${status}.`);
    this.status = status;
    this.code = problem.code || (status === 0 ? 'network' : 'unexpected');
    this.title = problem.title || 'Something went wrong';
    this.detail = this.message;
    this.errors = Array.isArray(problem.errors) ? problem.errors : [];
    this.missingScopes = Array.isArray(problem.missing_scopes) ? problem.missing_scopes : [];
  }
}

/**
 * One call. Resolves to { data, etag, status }; rejects with a Problem.
 * `etag` sends If-Match; `idempotencyKey` sends Idempotency-Key.
 */
export async function call(method, path, { body, etag, idempotencyKey } = {}) {
  const headers = { accept: 'application/json, application/problem+json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (etag) headers['if-match'] = etag;
  if (idempotencyKey) headers['idempotency-key'] = idempotencyKey;
  const token = currentToken();
  if (token) headers.authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(base + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch {
    throw new Problem(0, {
      code: 'network',
      title: 'No connection to the service',
      detail: 'The service could not be reached. Check your network and try again.',
    });
  }
  const type = response.headers.get('content-type') || '';
  let data = null;
  if (/json/.test(type)) {
    try {
      data = await response.json();
    } catch {
      data = null;
    }
  }
  if (response.status === 401) {
    onUnauthenticated();
    throw new Problem(401, data || { code: 'unauthenticated', detail: 'Sign in again.' });
  }
  if (!response.ok) throw new Problem(response.status, data);
  return { data, etag: response.headers.get('etag'), status: response.status };
}

/** Every connection, following `next_cursor`. */
export async function listAll() {
  const items = [];
  let cursor = null;
  for (let page = 0; page < 20; page += 1) {
    const query = cursor ? `?limit=100&cursor=${encodeURIComponent(cursor)}` : '?limit=100';
    const { data } = await call('GET', `/connections${query}`);
    items.push(...(data.items || []));
    cursor = data.next_cursor;
    if (!cursor) break;
  }
  return items;
}

export const connectionPath = (id) => `/connections/${encodeURIComponent(id)}`;
