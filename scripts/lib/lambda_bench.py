"""Benchmark harness for the functions, run by scripts/bench.

It provides what Lambda would: a Runtime API on loopback that hands events to a
function process and takes its answers; in front of the AWS emulator a proxy that
counts DynamoDB and KMS calls (by X-Amz-Target) and times them; and a fake
Bitbucket whose /2.0/user answers after a fixed delay, to show that verification
and encryption overlap. The functions get the environment the template gives them
(including the one-partition file, shared/src/partition.rs), and the peers in
bench/peers (scripts/lib/peers.py) the same. Standard library only.

Usage: python lambda_bench.py --bin-dir DIR --moto URL [--runs 7] [--requests 20]
"""

import argparse
import copy
import http.server
import json
import os
import queue
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid

import peers

FUNCTIONS = ["add", "list", "edit", "delete"]
# Start-up is measured for every function; warm requests for the four above.
STARTING = FUNCTIONS + ["browse", "credentials", "recheck", "web"]
FLOORS = ["hello", "hello-dynamodb"]
VERIFY_DELAY = 0.100
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Quiet(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, a keep-alive
    # client's delayed ACK would add ~40 ms to every answer.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        return self.rfile.read(int(self.headers.get("content-length") or 0))


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A killed function leaves its /next connection behind; nothing to report.
        pass


def serve(handler):
    server = Server(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"127.0.0.1:{server.server_address[1]}"


class RuntimeApi:
    """The Lambda Runtime API (2018-06-01): next, response, error."""

    def __init__(self):
        self.events = queue.Queue()
        self.results = {}
        self.first_next = threading.Event()
        self.first_next_at = None
        self.nexts = 0
        self.asked = threading.Condition()
        api = self

        class Handler(Quiet):
            def do_GET(self):
                if not self.path.endswith("/runtime/invocation/next"):
                    return self.reply(404)
                if not api.first_next.is_set():
                    api.first_next_at = time.perf_counter()
                    api.first_next.set()
                with api.asked:
                    api.nexts += 1
                    api.asked.notify_all()
                item = api.events.get()
                if item is None:
                    return self.reply(500)
                request_id, event = item
                deadline = str(int(time.time() * 1000) + 30_000)
                headers = [
                    ("content-type", "application/json"),
                    ("lambda-runtime-aws-request-id", request_id),
                    ("lambda-runtime-deadline-ms", deadline),
                    ("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:123456789012:function:bench"),
                    ("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000"),
                ]
                self.reply(200, json.dumps(event).encode(), headers)

            def do_POST(self):
                body = self.body()
                parts = self.path.split("/")
                if "invocation" in parts and parts[-1] in ("response", "error"):
                    request_id = parts[-2]
                    if request_id in api.results:
                        api.results[request_id].put((parts[-1], body))
                self.reply(202)

        self.server, self.address = serve(Handler)

    def reset(self):
        self.first_next.clear()
        self.first_next_at = None
        self.events = queue.Queue()
        with self.asked:
            self.nexts = 0

    def wait_asked(self, times, timeout):
        """Waits until the function has asked for an event `times` times: it is idle again."""
        with self.asked:
            if not self.asked.wait_for(lambda: self.nexts >= times, timeout):
                raise RuntimeError(f"the function asked for {self.nexts} events, not {times}")

    def invoke(self, event):
        request_id = str(uuid.uuid4())
        answer = queue.Queue()
        self.results[request_id] = answer
        started = time.perf_counter()
        self.events.put((request_id, event))
        kind, body = answer.get(timeout=30)
        elapsed = time.perf_counter() - started
        del self.results[request_id]
        if kind != "response":
            raise RuntimeError(f"function error: {body[:300]!r}")
        return json.loads(body), elapsed


class CountingProxy:
    """Forwards AWS calls to the emulator, counting and timing them by operation."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.counts = {}
        self.durations = {}
        self.lock = threading.Lock()
        proxy = self

        class Handler(Quiet):
            def do_GET(self):
                # As DynamoDB answers it (the functions' start-up opens its connection with
                # it); moto would render a page, which no AWS endpoint does.
                if self.path == "/":
                    with proxy.lock:
                        proxy.counts["GET /"] = proxy.counts.get("GET /", 0) + 1
                    return self.reply(200, b"healthy: dynamodb.us-east-1.amazonaws.com")
                self.do_POST()

            def do_POST(self):
                body = self.body() if self.command == "POST" else None
                target = self.headers.get("x-amz-target", f"{self.command} {self.path}")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                request = urllib.request.Request(proxy.upstream + self.path, data=body, headers=headers, method=self.command)
                started = time.perf_counter()
                try:
                    with urllib.request.urlopen(request) as response:
                        status, payload, content_type = response.status, response.read(), response.headers.get("content-type", "")
                except urllib.error.HTTPError as error:
                    status, payload, content_type = error.code, error.read(), error.headers.get("content-type", "")
                took = time.perf_counter() - started
                with proxy.lock:
                    proxy.counts[target] = proxy.counts.get(target, 0) + 1
                    proxy.durations.setdefault(target, []).append(took)
                self.reply(status, payload, [("content-type", content_type)])

        self.server, self.address = serve(Handler)

    def take(self):
        with self.lock:
            counts, durations = self.counts, self.durations
            self.counts, self.durations = {}, {}
        return counts, durations


class SlowBitbucket:
    """Bitbucket Cloud's GET /2.0/user for an API token (and an empty page of repositories),
    answering after `delay` seconds."""

    def __init__(self, delay=VERIFY_DELAY):
        class Handler(Quiet):
            def do_GET(self):
                time.sleep(delay)
                if "/repositories" in self.path:
                    page = {"pagelen": 50, "page": 1, "values": []}
                    return self.reply(200, json.dumps(page).encode(), [("content-type", "application/json")])
                user = {"type": "user", "uuid": "{bench-user}", "display_name": "Bench", "nickname": "bench"}
                scopes = ", ".join(
                    ["read:user:bitbucket", "read:repository:bitbucket", "write:repository:bitbucket",
                     "read:pullrequest:bitbucket", "write:pullrequest:bitbucket", "read:project:bitbucket"])
                headers = [("content-type", "application/json"), ("x-oauth-scopes", scopes), ("x-credential-type", "api_token")]
                self.reply(200, json.dumps(user).encode(), headers)

        self.server, self.address = serve(Handler)


def aws_call(endpoint, service, target, payload):
    headers = {
        "content-type": "application/x-amz-json-1.0" if service == "dynamodb" else "application/x-amz-json-1.1",
        "x-amz-target": target,
        "authorization": f"AWS4-HMAC-SHA256 Credential=testing/20261128/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0",
    }
    request = urllib.request.Request(endpoint, data=json.dumps(payload).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read() or b"{}")


def prepare_backends(moto):
    table = f"bench-{uuid.uuid4().hex[:8]}"
    template = {"TableName": table, "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]}
    aws_call(moto, "dynamodb", "DynamoDB_20120810.CreateTable", template)
    key = aws_call(moto, "kms", "TrentService.CreateKey", {})["KeyMetadata"]["KeyId"]
    return table, key


def function_env(runtime, proxy, table, key, name):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_LAMBDA_RUNTIME_API": runtime.address,
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
        "AWS_EXECUTION_ENV": "AWS_Lambda_provided.al2023",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": f"http://{proxy.address}",
        "CONNECTIONS_BACKEND": "aws",
        "CONNECTIONS_TABLE": table,
        "CONNECTIONS_KEY_ID": key,
        "BITBUCKET_ALLOWED_PRIVATE": "127.0.0.0/8",
        "BITBUCKET_ALLOWED_HTTP": "127.0.0.1",
        "RUST_LOG": "info",
        # As the template sets them (shared/src/partition.rs).
        "CONNECTIONS_AWS_PARTITION": "aws",
        "SMITHY_CLIENT_SDK_CUSTOM_PARTITION": os.path.join(tempfile.gettempdir(), f"bench-partition-{name}.json"),
    }
    return env


def start(bin_dir, name, env, runtime, argv=None):
    runtime.reset()
    started = time.perf_counter()
    argv = argv or [os.path.join(bin_dir, name)]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not runtime.first_next.wait(timeout=20):
        process.kill()
        raise RuntimeError(f"{name} never asked for an event")
    return process, runtime.first_next_at - started


def init_instructions(bin_dir, name, env, runtime):
    """Instructions from exec to the first /next under callgrind: unlike time,
    the same for the same binary whatever else the machine is doing."""
    runtime.reset()
    # Nothing reaches AWS before the first /next, and Lambda sets no endpoint override:
    # counted as deployed, without the emulator's AWS_ENDPOINT_URL (parsing it is 17 k).
    env = {k: v for k, v in env.items() if k != "AWS_ENDPOINT_URL"}
    # Start-up itself; opening AWS connections (which it does next) is measured over TLS by tls_bench.
    env["CONNECTIONS_OPEN_AT_START"] = "0"
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        process = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", os.path.join(bin_dir, name)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not runtime.first_next.wait(timeout=120):
            process.kill()
            raise RuntimeError(f"{name} never asked for an event under callgrind")
        # callgrind writes its counts when the process ends; the blocked /next
        # keeps the count at the moment the function asked for work.
        process.terminate()
        process.wait()
        runtime.events.put(None)
        with open(out) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    return int(line.split()[1])
    raise RuntimeError(f"no callgrind totals for {name}")


def stop(process, runtime):
    """Ends the function; returns its resource usage (peak RSS, page faults)."""
    process.kill()
    _, _, usage = os.wait4(process.pid, 0)
    process.returncode = -9
    runtime.events.put(None)
    return usage


def load_event(function, file):
    with open(os.path.join(ROOT, "functions", function, "events", file)) as f:
        return json.load(f)


def event_for(template, path=None, body=None, path_id=None, headers=None):
    event = copy.deepcopy(template)
    if path:
        event["rawPath"] = path
        event["requestContext"]["http"]["path"] = path
    if path_id:
        event["pathParameters"] = {"id": path_id}
    if body is not None:
        event["body"] = json.dumps(body)
    for name, value in (headers or {}).items():
        event["headers"][name] = value
    event["requestContext"]["requestId"] = str(uuid.uuid4())
    return event


def median_ms(values):
    return statistics.median(values) * 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin-dir", required=True)
    parser.add_argument("--moto", required=True)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--instructions-of", nargs="+", metavar="LABEL=DIR",
                        help="only start-up instructions, for builds side by side, each against its own floors")
    args = parser.parse_args()

    runtime = RuntimeApi()
    proxy = CountingProxy(args.moto)
    bitbucket = SlowBitbucket()
    table, key = prepare_backends(args.moto)
    if args.instructions_of:
        return compare_instructions(args.instructions_of, runtime, proxy, table, key)

    print(f"\n== Cold start: spawn -> first /next, median of {args.runs} runs (floor: hello, the smallest lambda_http function;")
    print("   hello+ddb: hello plus the DynamoDB client every function builds at start, the required stack's own floor),")
    print("   before opening AWS connections (CONNECTIONS_OPEN_AT_START=0; tls_bench measures that part)")
    inits, faults = {}, {}
    for name in FLOORS + STARTING:
        samples, minor = [], []
        for _ in range(args.runs):
            env = dict(function_env(runtime, proxy, table, key, name), CONNECTIONS_OPEN_AT_START="0")
            process, took = start(args.bin_dir, name, env, runtime)
            samples.append(took)
            minor.append(stop(process, runtime).ru_minflt)
        inits[name] = median_ms(samples)
        faults[name] = statistics.median(minor)
    floor = inits["hello"]
    for name in FLOORS + STARTING:
        print(f"   {name:<14} {inits[name]:7.2f} ms   {inits[name] / floor:5.2f}x floor   {faults[name]:5.0f} page faults")
    if shutil.which("valgrind"):
        print("   instructions to the first /next (callgrind; repeatable, unlike time on a shared machine):")
        counts = {name: init_instructions(args.bin_dir, name, function_env(runtime, proxy, table, key, name), runtime)
                  for name in FLOORS + STARTING}
        for name in FLOORS + STARTING:
            print(f"   {name:<14} {counts[name] / 1e6:7.2f} M    {counts[name] / counts['hello']:5.2f}x floor"
                  f"   {counts[name] / counts['hello-dynamodb']:5.2f}x hello+ddb")
    else:
        print("   (valgrind not found: instruction counts skipped)")
    proxy.take()

    print(f"\n== Against the peers a team would otherwise write (bench/peers: boto3, AWS SDK for JavaScript v3),"
          f" median of {args.runs}")
    try:
        peers.ensure_peers(ROOT)
    except (OSError, RuntimeError, subprocess.CalledProcessError) as error:
        print(f"   skipped: the peers could not be installed ({error}); they need python3 -m venv, node and npm")
        return warm(args, runtime, proxy, bitbucket, table, key)
    listing = load_event("list", "list.json")

    def first_response(name, argv=None):
        """Spawn -> first /next, and spawn -> the answer to a first GET /connections."""
        env = function_env(runtime, proxy, table, key, name)
        inits, firsts = [], []
        for _ in range(args.runs):
            started = time.perf_counter()
            process, init = start(args.bin_dir, name, env, runtime, argv)
            answer, _ = runtime.invoke(event_for(listing))
            firsts.append(time.perf_counter() - started)
            inits.append(init)
            # Idle before it is stopped: a /next still on its way would take the next process's event.
            runtime.wait_asked(2, 10)
            stop(process, runtime)
            if answer.get("statusCode") != 200:
                raise RuntimeError(f"{name} answered {answer}")
        return median_ms(inits), median_ms(firsts)

    peer_figures = {peer: first_response(peer, argv) for peer, argv in peers.commands(ROOT).items()}
    rust_list = first_response("list")
    for peer, (init, first) in peer_figures.items():
        print(f"   {peer:<11} init {init:7.1f} ms   spawn to first response (GET /connections) {first:7.1f} ms")
    print(f"   {'list':<11} init {rust_list[0]:7.1f} ms   spawn to first response (GET /connections) {rust_list[1]:7.1f} ms")
    print("   (the first GET /connections finds no connection: start-up plus one Query, in every language)")
    print("   ratios, Rust / peer: init and first response for list, which does the peers' work (this section's runs);")
    print("   init for the other functions from the cold-start medians above")
    for peer, (init, first) in peer_figures.items():
        others = ", ".join(f"{name} {inits[name] / init:.3f}" for name in STARTING if name != "list")
        print(f"   vs {peer:<8} list: init {rust_list[0] / init:.3f}, first response {rust_list[1] / first:.3f}; init: {others}")
    proxy.take()
    warm(args, runtime, proxy, bitbucket, table, key)


def compare_instructions(builds, runtime, proxy, table, key):
    """Start-up instructions of the same functions built differently, each build's
    functions against the floors built the same way (a ratio to another build's floor
    would credit the functions with what the floor gains too)."""
    counts = {}
    for build in builds:
        label, _, bin_dir = build.partition("=")
        counts[label] = {name: init_instructions(bin_dir, name, function_env(runtime, proxy, table, key, name), runtime)
                         for name in FLOORS + STARTING}
    print("   instructions to the first /next (callgrind), M, and x its own build's floors (hello, hello+ddb):")
    print("   " + " " * 14 + "".join(f"{label:>30}" for label in counts))
    for name in FLOORS + STARTING:
        cells = "".join(f"{c[name] / 1e6:10.3f} M {c[name] / c['hello']:6.2f}x {c[name] / c['hello-dynamodb']:6.2f}x"
                        for c in counts.values())
        print(f"   {name:<14}{cells}")


def warm(args, runtime, proxy, bitbucket, table, key):
    """Warm and first-request latency and AWS calls per route, one function process at a time."""
    print(f"\n== Warm requests, median of {args.requests}, backends on loopback (moto behind a counting proxy; Bitbucket answers after {VERIFY_DELAY * 1000:.0f} ms)")

    # One function process at a time, so the one Runtime API hands each its own events.
    peaks = {}

    def run(name, events):
        process, _ = start(args.bin_dir, name, function_env(runtime, proxy, table, key, name), runtime)
        answers, times, outside = [], [], []
        counts, durations = {}, {}
        proxy.take()
        for event in events:
            answer, took = runtime.invoke(event)
            answers.append(answer)
            times.append(took)
            # One request at a time, so what the proxy saw since the last one is this request's.
            # add's Encrypt runs while Bitbucket answers: hidden in that wait, not subtracted.
            these_counts, these_durations = proxy.take()
            outside.append(took - sum(sum(v) for k, v in these_durations.items() if k != "TrentService.Encrypt"))
            for target, count in these_counts.items():
                counts[target] = counts.get(target, 0) + count
                durations.setdefault(target, []).extend(these_durations[target])
        runtime.wait_asked(len(events) + 1, 10)
        peaks[name] = max(peaks.get(name, 0), stop(process, runtime).ru_maxrss / 1024)
        return answers, times, counts, durations, outside

    n = args.requests
    create = load_event("add", "create.json")
    url = f"http://{bitbucket.address}/2.0"
    adds = [event_for(create, body={"name": f"bench-{i}", "url": url, "username": "bench@example.com", "password": "ATATT-bench-token"}) for i in range(n)]
    answers, add_times, add_counts, add_durations, add_outside = run("add", adds)
    ids = [json.loads(a["body"])["id"] for a in answers if a.get("statusCode") == 201]
    if len(ids) != n:
        raise RuntimeError(f"add did not create every connection: {answers[0]}")

    listing = load_event("list", "list.json")
    _, list_times, list_counts, list_durations, list_outside = run("list", [event_for(listing) for _ in range(n)])
    get = load_event("list", "get.json")
    _, get_times, get_counts, get_durations, get_outside = run("list", [event_for(get, path=f"/connections/{i}", path_id=i) for i in ids])
    rename = load_event("edit", "rename.json")
    _, edit_times, edit_counts, edit_durations, edit_outside = run("edit", [event_for(rename, path=f"/connections/{i}", path_id=i, body={"name": f"renamed-{i}"}, headers={"if-match": '"1"'}) for i in ids])
    delete = load_event("delete", "delete.json")
    _, delete_times, delete_counts, delete_durations, delete_outside = run("delete", [event_for(delete, path=f"/connections/{i}", path_id=i) for i in ids])

    def calls(counts):
        ddb = sum(v for k, v in counts.items() if k.startswith("DynamoDB")) / n
        kms = sum(v for k, v in counts.items() if k.startswith("TrentService")) / n
        detail = ", ".join(f"{k.split('.')[-1]} {v / n:g}" for k, v in sorted(counts.items()))
        return ddb, kms, detail

    print(f"   {'route':<26} {'median':>9} {'first':>9} {'in AWS':>9}  {'outside AWS: median':>19} {'first':>9}  {'DynamoDB':>8} {'KMS':>4}  calls per request")
    for label, times, counts, durations, outside in [
        ("POST /connections (add)", add_times, add_counts, add_durations, add_outside),
        ("GET /connections (list)", list_times, list_counts, list_durations, list_outside),
        ("GET /connections/{id}", get_times, get_counts, get_durations, get_outside),
        ("PATCH rename (edit)", edit_times, edit_counts, edit_durations, edit_outside),
        ("DELETE /connections/{id}", delete_times, delete_counts, delete_durations, delete_outside),
    ]:
        ddb, kms, detail = calls(counts)
        in_aws = sum(sum(v) for v in durations.values()) / n * 1000
        print(f"   {label:<26} {median_ms(times):6.2f} ms {times[0] * 1000:6.2f} ms {in_aws:6.2f} ms"
              f"  {median_ms(outside):16.2f} ms {outside[0] * 1000:6.2f} ms  {ddb:8g} {kms:4g}  {detail}")
    print("   ('first' is the first request after start-up, connection set-up included; 'in AWS' is the mean time")
    print("   spent in the emulator per request, through the proxy; 'outside AWS' is each request's time less its")
    print("   own time in the emulator: the function, the Runtime API, connection set-up, and for add Bitbucket's 100 ms,")
    print("   with the KMS Encrypt that overlaps it)")

    print("   peak RSS: " + ", ".join(f"{name} {peaks[name]:.1f} MB" for name in FUNCTIONS))

    encrypt = median_ms(add_durations.get("TrentService.Encrypt", [0]))
    write = median_ms(add_durations.get("DynamoDB_20120810.TransactWriteItems", [0]))
    add = median_ms(add_times)
    overlapped = max(VERIFY_DELAY * 1000, encrypt) + write
    print("\n== Add: verification and encryption overlap")
    print(f"   verify {VERIFY_DELAY * 1000:.1f} ms | KMS Encrypt {encrypt:.2f} ms | TransactWriteItems {write:.2f} ms")
    print(f"   add {add:.2f} ms = max(verify, encrypt) + write ({overlapped:.2f} ms) + {add - overlapped:.2f} ms"
          f"   (serial would be {VERIFY_DELAY * 1000 + encrypt + write:.2f} ms)")


if __name__ == "__main__":
    main()
