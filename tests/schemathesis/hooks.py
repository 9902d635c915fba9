"""Schemathesis hooks for tests/tests/schemathesis.rs (`hooks` in schemathesis.toml).

The test starts the fake Bitbucket in its process and passes its Cloud API base, and the
email and token of the one account it knows with every scope, in FAKE_BITBUCKET_URL,
FAKE_BITBUCKET_EMAIL and FAKE_BITBUCKET_TOKEN. The hooks make generated requests mean
something without hiding anything the document promises:

* No request makes the service reach beyond this machine. A create or edit whose `url` the
  document allows (`ServerUrl`) is pointed at the fake, and so is a create without one
  (the default, https://api.bitbucket.org/2.0, is the real Bitbucket). A `url` the
  document refuses keeps the part that breaks it but gets `.invalid` after its host
  (RFC 6761: the service's resolver answers that name without a query), because the
  service parses URLs as browsers do and takes a few the document refuses.
* Schema-valid (positive) creates and credential edits carry the account the fake knows
  (an API token, so no `resource`: that is only for access tokens, and whether an edit
  may name one depends on the stored kind, which no schema knows), so they are verified
  and stored (201 / 200) and the stateful phase follows the document's links from real
  connections. An `expires_at` that is not in the future is
  moved to one that is (the document says it must be; a JSON Schema cannot say "after
  now"). A positive `Idempotency-Key` is made unique to the request: as documented, the
  same key with another body is 422 `idempotency_key_reused`, and with the same body it
  replays the first 201 even after that connection was deleted, which the stateful
  checks would take for a connection created and lost (replays are tested in
  tests/tests/hardening.rs and tests/tests/resilience.rs). Negative cases keep every
  other generated field: they exercise the refusals.
* A positive listing keeps its `cursor` only if the service returned it as `next_cursor`:
  a cursor is opaque, and anything else is, as documented, 422 `validation_failed`.
* Schemathesis 4.32's coverage phase, when it cannot build a schema-valid `CreateRequest`
  to carry a header scenario (e.g. a 255-character `Idempotency-Key`), sends its negative
  fallback body (`0`) in a case it marks positive. That body is replaced by a valid one,
  so the header scenario is tested as the case claims.
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
import pathlib
import re
import zlib

import jsonschema_rs
import yaml

import schemathesis
from schemathesis.core.parameters import ParameterLocation

FAKE_URL = os.environ["FAKE_BITBUCKET_URL"]
EMAIL = os.environ["FAKE_BITBUCKET_EMAIL"]
TOKEN = os.environ["FAKE_BITBUCKET_TOKEN"]

_DOCUMENT = yaml.safe_load((pathlib.Path(__file__).resolve().parents[2] / "infra/openapi.yaml").read_text())
_SERVER_URL = jsonschema_rs.validator_for(
    {key: value for key, value in _DOCUMENT["components"]["schemas"]["ServerUrl"].items() if key != "description"},
    validate_formats=True,
)
# Fields whose change sends the connection to Bitbucket again.
_CREDENTIAL_FIELDS = ("url", "username", "password", "credential_type", "resource")
_LISTINGS = ("/connections", "/connections/{id}/workspaces", "/connections/{id}/repositories")
_FUTURE = "2099-12-31"
# Scheme, authority and the rest of a URL as a WHATWG parser splits them, leniently.
_AUTHORITY = re.compile(r"^(\s*[A-Za-z][A-Za-z0-9+.-]*:[/\\]*)([^/\\?#]*)(.*)$", re.DOTALL)

# Idempotency keys of this run.
_KEYS = itertools.count()
# Every `next_cursor` the service has returned in this run.
_CURSORS: set[str] = set()


def _is_positive(case) -> bool:
    return case.meta is not None and case.meta.generation.mode.is_positive


def _is_listing(case) -> bool:
    return case.method == "GET" and (case.path in _LISTINGS or case.path.endswith("/branches"))


def _in_the_future(value) -> bool:
    if not isinstance(value, str):
        return False
    text = value.strip()
    try:
        if len(text) == 10:
            moment = datetime.datetime.fromisoformat(text).replace(hour=23, minute=59, second=59)
            moment = moment.replace(tzinfo=datetime.timezone.utc)
        else:
            moment = datetime.datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00").replace("t", "T"))
    except ValueError:
        return False
    return moment > datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)


def _point_at_the_fake(case, body: dict) -> None:
    url = body.get("url")
    # A create without a URL (absent or null) is for the real Bitbucket Cloud.
    if (url is None and case.method == "POST") or (isinstance(url, str) and _SERVER_URL.is_valid(url)):
        body["url"] = FAKE_URL
    elif isinstance(url, str):
        body["url"] = _never_resolved(url)


def _never_resolved(url: str) -> str:
    """`url` with `.invalid` after its host, for a URL the document refuses.

    The server parses URLs as browsers do and takes some that are not IRIs (a space in the
    path, say); nothing it is sent should make it ask DNS or a host beyond this machine.
    RFC 6761 reserves `.invalid`, and the service's resolver answers it without a query.
    The part that breaks the document stays as generated.
    """
    match = _AUTHORITY.match(url)
    if match is None:
        return url
    scheme, authority, rest = match.groups()
    userinfo, at, host_port = authority.rpartition("@")
    host, colon, port = host_port.partition(":")
    if not host.strip() or host.startswith("["):
        return url
    hermetic = f"{scheme}{userinfo}{at}{host}.invalid{colon}{port}{rest}"
    # Never make a refused URL acceptable: the case would stop being the negative one it is.
    return url if _SERVER_URL.is_valid(hermetic) else hermetic


def _accepted_by_the_fake(case, body: dict) -> None:
    # `null` is the same as leaving a field out; a PATCH with no credential field keeps them.
    if case.method == "POST" or any(body.get(field) is not None for field in _CREDENTIAL_FIELDS):
        body["url"] = FAKE_URL
        body["username"] = EMAIL
        body["password"] = TOKEN
        if body.get("credential_type") is not None:
            body["credential_type"] = "api_token"
        # Only access tokens are bound to a resource; these connections are an API token's.
        if body.get("resource") is not None:
            body["resource"] = None
    if body.get("expires_at") is not None and not _in_the_future(body["expires_at"]):
        body["expires_at"] = _FUTURE


def _unique_idempotency_key(case) -> None:
    for name in list(case.headers or {}):
        if name.lower() == "idempotency-key" and isinstance(case.headers[name], str):
            key = case.headers[name]
            # The same length, so a near-boundary key stays one.
            case.headers[name] = f"{key[:-9] if len(key) >= 9 else key}.{next(_KEYS):08x}"


def _has_negative_fallback_body(case) -> bool:
    return _is_positive(case) and case.meta.is_negative_at(ParameterLocation.BODY)


def _valid_body(case) -> dict:
    headers = json.dumps(sorted((case.headers or {}).items()))
    return {"name": f"header scenario {zlib.crc32(headers.encode()):08x}"}


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.operation.path in ("/connections", "/connections/{id}") and _has_negative_fallback_body(case):
        case.body = _valid_body(case)
    if case.operation.path in ("/connections", "/connections/{id}") and case.method in ("POST", "PATCH"):
        body = case.body
        if isinstance(body, dict):
            _point_at_the_fake(case, body)
            if _is_positive(case):
                _accepted_by_the_fake(case, body)
                if case.method == "POST":
                    _unique_idempotency_key(case)
    if _is_listing(case) and _is_positive(case):
        query = case.query or {}
        if "cursor" in query and query["cursor"] not in _CURSORS:
            del query["cursor"]


@schemathesis.hook
def after_call(context, case, response):
    if case.method == "GET" and response.status_code == 200:
        try:
            cursor = response.json().get("next_cursor")
        except (ValueError, AttributeError):
            return
        if isinstance(cursor, str):
            _CURSORS.add(cursor)
