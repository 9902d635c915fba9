// Credential kinds, how the page guesses one from the fields (as the API does),
// and the words for what a connection can do.

export const DEFAULT_URL = 'https://api.bitbucket.org/2.0';

export const KIND_LABELS = {
  api_token: 'Cloud API token',
  app_password: 'Cloud app password (retired)',
  repository_access_token: 'Cloud repository access token',
  project_access_token: 'Cloud project access token',
  workspace_access_token: 'Cloud workspace access token',
  http_access_token: 'Data Center personal HTTP access token',
  project_http_access_token: 'Data Center project HTTP access token',
  repository_http_access_token: 'Data Center repository HTTP access token',
  oauth: 'Connect with Bitbucket (OAuth)',
};

export const PROVIDER_LABELS = { bitbucket_cloud: 'Cloud', bitbucket_data_center: 'Data Center' };

export const STATUS_LABELS = { verified: 'Verified', invalid: 'Invalid', expiring: 'Expiring', expired: 'Expired' };

/** Whether a server URL is Bitbucket Cloud (the API's rule: bitbucket.org, or an API path ending in /2.0). */
export function isCloud(text) {
  const trimmed = (text || '').trim();
  if (!trimmed) return true;
  let url;
  try {
    url = new URL(trimmed);
  } catch {
    return true;
  }
  const host = url.hostname.toLowerCase();
  if (['bitbucket.org', 'www.bitbucket.org', 'api.bitbucket.org'].includes(host)) return true;
  return url.pathname.replace(/\/+$/, '').endsWith('/2.0');
}

/** A resource as the API reads it: slugs, and what a pasted address shows it to be. */
function resourceShape(text) {
  const trimmed = (text || '').trim();
  if (!trimmed) return null;
  let path = trimmed;
  let isUrl = false;
  try {
    const url = new URL(trimmed);
    if (url.protocol === 'https:' || url.protocol === 'http:') {
      path = url.pathname;
      isUrl = true;
    }
  } catch {
    // a plain slug path
  }
  const s = path.split('/').filter(Boolean);
  if (s.length >= 4 && s[1] === 'workspace' && s[2] === 'projects') return { parts: 2, hint: 'project' };
  if (s[0] === 'projects' && s[2] === 'repos' && s.length >= 4) return { parts: 2, hint: 'repository' };
  if (s[0] === 'projects' && s.length >= 2) return { parts: 1, hint: 'project' };
  if (s[0] === 'scm' && s.length >= 3) return { parts: 2, hint: 'repository' };
  if (s.length >= 2 && isUrl) return { parts: 2, hint: 'repository' };
  return { parts: s.length, hint: null };
}

/** The kind the API would infer; an empty form suggests the usual Cloud API token. */
export function inferKind(urlText, username, resource) {
  const cloud = isCloud(urlText);
  const user = (username || '').trim();
  const shape = resourceShape(resource);
  if (user) {
    if (!cloud) return 'http_access_token';
    return user.includes('@') ? 'api_token' : 'app_password';
  }
  if (!shape) return cloud ? 'api_token' : 'http_access_token';
  if (cloud) {
    if (shape.hint === 'project') return 'project_access_token';
    return shape.parts === 1 ? 'workspace_access_token' : 'repository_access_token';
  }
  return shape.parts === 1 ? 'project_http_access_token' : 'repository_http_access_token';
}

const CORE = [
  ['read_code', 'import', false],
  ['push', 'push', false],
  ['pull_requests', 'pull requests', true],
];

function capitalise(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function joinWords(words) {
  if (words.length < 2) return words.join('');
  return `${words.slice(0, -1).join(', ')} and ${words[words.length - 1]}`;
}

/** "Import works; pull requests need write:pullrequest:bitbucket." */
export function capabilitySummary(capabilities) {
  if (!capabilities) return '';
  const works = [];
  const needs = [];
  for (const [key, word, plural] of CORE) {
    const capability = capabilities[key];
    if (!capability) continue;
    if (capability.enabled) works.push(word);
    else needs.push(`${word} ${plural ? 'need' : 'needs'} ${capability.needs || 'more permissions'}`);
  }
  const parts = [];
  if (works.length) {
    const plural = works.length > 1 || works[0] === 'pull requests';
    parts.push(`${joinWords(works)} ${plural ? 'work' : 'works'}`);
  }
  parts.push(...needs);
  return parts.length ? `${capitalise(parts.join('; '))}.` : '';
}

const ALL = [
  ['read_code', 'Import code'],
  ['push', 'Push branches'],
  ['pull_requests', 'Open pull requests'],
  ['list_workspaces', 'List workspaces'],
  ['identity', 'Show the account'],
];

/** Each capability as a line: "Open pull requests: needs write:pullrequest:bitbucket". */
export function capabilityLines(capabilities) {
  if (!capabilities) return [];
  return ALL.filter(([key]) => capabilities[key])
    .filter(([key]) => capabilities[key].enabled || capabilities[key].needs)
    .map(([key, label]) => {
      const capability = capabilities[key];
      return { label, enabled: capability.enabled, text: capability.enabled ? 'works' : `needs ${capability.needs}` };
    });
}
