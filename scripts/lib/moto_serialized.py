"""moto's server, with DynamoDB's isolation and its transaction conflicts.

Isolation: moto rolls back a failed TransactWriteItems by restoring a snapshot of
the whole table taken before it started; when requests run concurrently, that
restore can undo a write another request committed meanwhile. DynamoDB never does
that, so requests are applied one at a time here.

Conflicts: DynamoDB does not queue transactions that touch the same item. While a
transaction is in flight it holds its items, and another transaction touching one
of them is cancelled (TransactionCanceledException, reason TransactionConflict);
a plain PutItem/UpdateItem/DeleteItem on a held item fails with
TransactionConflictException. moto does neither, so this wrapper does: every
TransactWriteItems holds its item keys for HOLD_SECONDS before it is applied, and
whatever arrives for those keys meanwhile is refused the way DynamoDB refuses it.
Clients must therefore retry conflicts, as they must against DynamoDB.

Cost: moto snapshots a whole table (deep copy) before every transaction to undo
it on failure, which makes each transaction as slow as the table is big. Since
requests are applied one at a time here, undoing only the items a transaction
touches is equivalent, and keeps a 500-connection test fast.

Usage: python moto_serialized.py HOST PORT   (MOTO_CONFLICT_HOLD_MS, default 25)
"""

import copy
import io
import json
import os
import sys
import threading
import time

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple
import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table


class _TablesNotCopied:
    """The models module's `copy`, except that whole tables are not deep-copied."""

    @staticmethod
    def deepcopy(value, *args, **kwargs):
        return value if isinstance(value, Table) else copy.deepcopy(value, *args, **kwargs)


dynamodb_models.copy = _TablesNotCopied
_transact = DynamoDBBackend.transact_write_items


def _transact_undoing_touched_items(self, transact_items):
    saved = []
    for entry in transact_items:
        _, op = next(iter(entry.items()))
        table = self.tables.get(op.get("TableName"))
        if table is None:
            continue
        if "Item" in op:
            key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
            if table.range_key_attr is not None:
                key[table.range_key_attr] = op["Item"][table.range_key_attr]
        else:
            key = op.get("Key") or {}
        try:
            before = self.get_item(op["TableName"], key)
        except Exception:
            before = None
        saved.append((op["TableName"], key, copy.deepcopy(before.to_json()["Attributes"]) if before else None))
    try:
        return _transact(self, transact_items)
    except Exception:
        for table_name, key, attributes in reversed(saved):
            try:
                if attributes is None:
                    self.delete_item(table_name, key)
                else:
                    self.put_item(table_name, attributes)
            except Exception:
                pass
        raise


DynamoDBBackend.transact_write_items = _transact_undoing_touched_items

host, port = sys.argv[1], int(sys.argv[2])
HOLD_SECONDS = int(os.environ.get("MOTO_CONFLICT_HOLD_MS", "25")) / 1000
# The tables the tests create from the template are keyed by pk (+ sk).
KEY_ATTRIBUTES = ("pk", "sk")

app = DomainDispatcherApplication(create_backend_app)
apply_lock = threading.Lock()
held_lock = threading.Lock()
held = set()
conflicts = {"transactions": 0, "single_writes": 0}
# Calls per DynamoDB operation and table (and per target of the other JSON services, such as
# TrentService.Decrypt for KMS), so tests can prove what was (not) called: GET /conflict-emulation/stats
operations = {}


def item_key(table, attributes):
    parts = tuple(json.dumps(attributes.get(name), sort_keys=True) for name in KEY_ATTRIBUTES)
    return (table, parts)


def transaction_keys(body):
    keys = []
    for entry in body.get("TransactItems", []):
        for kind, operation in entry.items():
            attributes = operation.get("Item") if kind == "Put" else operation.get("Key")
            keys.append(item_key(operation.get("TableName"), attributes or {}))
    return keys


def error(start_response, kind, message, extra=None):
    payload = {"__type": f"com.amazonaws.dynamodb.v20120810#{kind}", "message": message}
    payload.update(extra or {})
    data = json.dumps(payload).encode()
    start_response("400 Bad Request", [
        ("Content-Type", "application/x-amz-json-1.0"),
        ("Content-Length", str(len(data))),
        ("x-amzn-RequestId", "conflict-emulation"),
    ])
    return [data]


def apply(environ, start_response, raw):
    environ["wsgi.input"] = io.BytesIO(raw)
    environ["CONTENT_LENGTH"] = str(len(raw))
    with apply_lock:
        return list(app(environ, start_response))


def serve(environ, start_response):
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    operation = target.rsplit(".", 1)[-1] if target.startswith("DynamoDB_") else ""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length) if length else b""
    if target:
        # DynamoDB calls by operation and table; other JSON services by target and key id.
        name, field = (operation, "TableName") if operation else (target, "KeyId")
        try:
            detail = json.loads(raw or b"{}").get(field, "")
        except ValueError:
            detail = ""
        with held_lock:
            key = f"{name} {detail}".strip()
            operations[key] = operations.get(key, 0) + 1
    if operation == "TransactWriteItems":
        keys = transaction_keys(json.loads(raw or b"{}"))
        with held_lock:
            clashing = [key in held for key in keys]
            if not any(clashing):
                held.update(keys)
        if any(clashing):
            conflicts["transactions"] += 1
            reasons = [
                {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}
                if clash else {"Code": "None"}
                for clash in clashing
            ]
            codes = ", ".join(r["Code"] for r in reasons)
            return error(start_response, "TransactionCanceledException",
                         f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
                         {"CancellationReasons": reasons})
        try:
            time.sleep(HOLD_SECONDS)
            return apply(environ, start_response, raw)
        finally:
            with held_lock:
                held.difference_update(keys)
    if operation in ("PutItem", "UpdateItem", "DeleteItem"):
        body = json.loads(raw or b"{}")
        attributes = body.get("Item") if operation == "PutItem" else body.get("Key")
        with held_lock:
            clash = item_key(body.get("TableName"), attributes or {}) in held
        if clash:
            conflicts["single_writes"] += 1
            return error(start_response, "TransactionConflictException",
                         "Transaction is ongoing for the item")
    if environ.get("PATH_INFO") == "/conflict-emulation/stats":
        data = json.dumps(dict(conflicts, operations=operations)).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]
    return apply(environ, start_response, raw)


run_simple(host, port, serve, threaded=True, request_handler=MotoRequestHandler)
