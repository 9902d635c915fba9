"""moto's server, processing one request at a time.

moto rolls back a failed TransactWriteItems by restoring a snapshot of the whole
table taken before it started; when requests run concurrently, that restore can
undo a write another request committed meanwhile (a deleted item comes back).
DynamoDB never does that: transactions and conditional writes are isolated. Serving
requests one at a time gives the tests DynamoDB's isolation, so race tests judge
the service's conditions, not the emulator's rollback.

Usage: python moto_serialized.py HOST PORT
"""

import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

host, port = sys.argv[1], int(sys.argv[2])
app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()


def serialized(environ, start_response):
    with lock:
        return list(app(environ, start_response))


run_simple(host, port, serialized, threaded=True, request_handler=MotoRequestHandler)
