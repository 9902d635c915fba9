"""The first request after a cold start against a warm one, as deployed: for scripts/bench.

AWS is reached as a function on AWS reaches it: over TLS, with a certificate chain
(root, intermediate, leaf) its client verifies, and a round-trip delay (2 ms: in-region).
bench/tls-proxy provides that in front of the emulator, through lambda_bench's counting
proxy, which times each AWS call so that a request's own time can be told from the
emulator's. DynamoDB and KMS get an endpoint each, as their host names are on AWS.
Bitbucket (add, browse) answers at once over plain HTTP: its connection is per user
server, so it is outside what start-up can prepare, and it would hide the rest.

For each function: init (spawn to the first /next), the first request and the median
warm request, in wall time (each request less its time in the emulator) and in
instructions (callgrind: three runs stopped at the first, second and last /next). The
peers (bench/peers: list's work in Python + boto3 and Node.js + AWS SDK v3) are timed
the same way; valgrind does not run their interpreters usefully, so they have wall time only.

Usage: python tls_bench.py --bin-dir DIR --moto URL --proxy BIN [--rtt-ms 2] [--runs 5] [--warm 10]
                           [--env NAME=VALUE ...] [--no-peers]
Standard library only.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lambda_bench as lb  # noqa: E402
import peers  # noqa: E402


def owned(event, owner):
    event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = owner
    return event


class Bench:
    def __init__(self, args):
        self.args = args
        self.runtime = lb.RuntimeApi()
        self.counting = lb.CountingProxy(args.moto)
        self.bitbucket = lb.SlowBitbucket(delay=0)
        self.table, self.key = lb.prepare_backends(args.moto)
        self.tmp = tempfile.mkdtemp(prefix="tls-bench-")
        self.ca = os.path.join(self.tmp, "ca.pem")
        if shutil.which("openssl") is None:
            raise SystemExit("tls_bench needs the openssl command to make the bench CA's RSA keys")
        for name in ["root", "intermediate", "leaf"]:
            subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                            "-out", os.path.join(self.tmp, f"{name}.pem")], check=True, capture_output=True)
        self.proxy = subprocess.Popen(
            [args.proxy, self.counting.address, str(args.rtt_ms), "2", self.ca, self.tmp],
            stdout=subprocess.PIPE, text=True)
        self.dynamodb_port, self.kms_port = self.proxy.stdout.readline().split()
        self.url = f"http://{self.bitbucket.address}/2.0"

    def close(self):
        self.proxy.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def env(self, name, tls=True):
        env = lb.function_env(self.runtime, self.counting, self.table, self.key, name)
        if tls:
            del env["AWS_ENDPOINT_URL"]
            env["AWS_ENDPOINT_URL_DYNAMODB"] = f"https://127.0.0.1:{self.dynamodb_port}"
            env["AWS_ENDPOINT_URL_KMS"] = f"https://127.0.0.1:{self.kms_port}"
            env["AWS_CA_BUNDLE"] = self.ca
        env.update(self.args.env)
        return env

    def peer_env(self, name):
        env = lb.function_env(self.runtime, self.counting, self.table, self.key, name)
        env["AWS_ENDPOINT_URL"] = f"https://127.0.0.1:{self.dynamodb_port}"
        env["AWS_CA_BUNDLE"] = self.ca
        env["NODE_EXTRA_CA_CERTS"] = self.ca
        return env

    def seed(self, count):
        """`count` connections, each its own owner's (the verification limit is per owner),
        added by the add function over plain HTTP: [(owner, id)]."""
        process, _ = lb.start(self.args.bin_dir, "add", self.env("add", tls=False), self.runtime)
        create = lb.load_event("add", "create.json")
        made = []
        try:
            for i in range(count):
                owner = f"bench-{uuid.uuid4().hex[:12]}"
                body = {"name": f"seed-{i}", "url": self.url, "username": "bench@example.com", "password": "ATATT-bench-token"}
                answer, _ = self.runtime.invoke(owned(lb.event_for(create, body=body), owner))
                if answer.get("statusCode") != 201:
                    raise RuntimeError(f"seeding: {answer}")
                made.append((owner, json.loads(answer["body"])["id"]))
            self.runtime.wait_asked(count + 1, 10)
        finally:
            lb.stop(process, self.runtime)
        return made

    def scenarios(self, seeded):
        """name -> (function, label, a function giving the i-th event of a run)."""
        create, listing = lb.load_event("add", "create.json"), lb.load_event("list", "list.json")
        rename, delete = lb.load_event("edit", "rename.json"), lb.load_event("delete", "delete.json")
        repositories, schedule = lb.load_event("browse", "repositories.json"), lb.load_event("recheck", "schedule.json")
        git = lb.load_event("credentials", "git.json")
        pool = {"edit": iter(seeded["edit"]), "delete": iter(seeded["delete"])}
        owner, browsed = seeded["browse"][0]

        def add(_):
            body = {"name": "tls", "url": self.url, "username": "bench@example.com", "password": "ATATT-bench-token"}
            return owned(lb.event_for(create, body=body), f"bench-{uuid.uuid4().hex[:12]}")

        def edit(_):
            who, i = next(pool["edit"])
            return owned(lb.event_for(rename, path=f"/connections/{i}", path_id=i, body={"name": f"renamed-{i}"},
                                      headers={"if-match": '"1"'}), who)

        def remove(_):
            who, i = next(pool["delete"])
            return owned(lb.event_for(delete, path=f"/connections/{i}", path_id=i), who)

        def browse(_):
            return owned(lb.event_for(repositories, path=f"/connections/{browsed}/repositories", path_id=browsed), owner)

        return {
            "add": ("add", "POST /connections", add),
            "list": ("list", "GET /connections", lambda _: lb.event_for(listing)),
            "edit": ("edit", "PATCH (rename)", edit),
            "delete": ("delete", "DELETE", remove),
            "browse": ("browse", "GET .../repositories", browse),
            "credentials": ("credentials", "git credentials", lambda _: dict(git, owner=owner, connection_id=browsed)),
            "recheck": ("recheck", "scheduled run", lambda _: dict(schedule)),
        }

    def request(self, event):
        """One invocation: its wall time less its time in the emulator (seconds)."""
        self.counting.take()
        answer, took = self.runtime.invoke(event)
        status = answer.get("statusCode", 200)
        if not 200 <= status < 300:
            raise RuntimeError(f"answered {answer}")
        _, durations = self.counting.take()
        return took - sum(sum(v) for v in durations.values())

    def wall(self, function, make, argv=None, env=None):
        inits, firsts, warms = [], [], []
        for _ in range(self.args.runs):
            process, init = lb.start(self.args.bin_dir, function, env or self.env(function), self.runtime, argv)
            try:
                firsts.append(self.request(make(0)))
                warms.append(statistics.median(self.request(make(i + 1)) for i in range(self.args.warm)))
                # Idle before it is stopped: a /next still on its way would take the next process's event.
                self.runtime.wait_asked(2 + self.args.warm, 10)
            finally:
                lb.stop(process, self.runtime)
            inits.append(init)
        return lb.median_ms(inits), lb.median_ms(firsts), lb.median_ms(warms)

    def instructions(self, function, make):
        """Instructions to the first /next, for the first request, and per warm request."""
        def counted(requests):
            self.runtime.reset()
            out = os.path.join(self.tmp, "callgrind.out")
            process = subprocess.Popen(
                ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", os.path.join(self.args.bin_dir, function)],
                env=self.env(function), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                self.runtime.wait_asked(1, 120)
                for i in range(requests):
                    answer, _ = self.runtime.invoke(make(i))
                    if not 200 <= answer.get("statusCode", 200) < 300:
                        raise RuntimeError(f"{function} under callgrind answered {answer}")
                # Idle again: what it counted is start-up and these requests.
                self.runtime.wait_asked(requests + 1, 120)
            finally:
                process.terminate()
                process.wait()
                self.runtime.events.put(None)
            with open(out) as f:
                for line in f:
                    if line.startswith(("summary:", "totals:")):
                        return int(line.split()[1])
            raise RuntimeError(f"no callgrind totals for {function}")

        init, one, many = counted(0), counted(1), counted(1 + self.args.warm)
        return init, one - init, (many - one) / self.args.warm


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin-dir", required=True)
    parser.add_argument("--moto", required=True)
    parser.add_argument("--proxy", required=True)
    parser.add_argument("--rtt-ms", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warm", type=int, default=10)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="for the functions, e.g. CONNECTIONS_OPEN_AT_START=0 to compare")
    parser.add_argument("--no-peers", action="store_true")
    args = parser.parse_args()
    args.env = dict(item.split("=", 1) for item in args.env)

    bench = Bench(args)
    try:
        per_run = 1 + args.warm
        needed = per_run * (args.runs + 2)
        seeded = {"browse": bench.seed(1), "edit": bench.seed(needed), "delete": bench.seed(needed)}
        scenarios = bench.scenarios(seeded)
        callgrind = shutil.which("valgrind") is not None
        print(f"\n== First request after a cold start vs warm: AWS over TLS at {args.rtt_ms:g} ms round trip"
              f" (bench/tls-proxy), median of {args.runs} starts, warm = median of {args.warm}")
        print("   wall: each request less its time in the emulator; instructions: callgrind"
              + ("" if callgrind else " (valgrind not found: skipped)"))
        print(f"   {'function':<12} {'request':<21} {'init':>8} {'first':>8} {'warm':>8} {'first/warm':>10}"
              f"   {'init':>8} {'first':>8} {'warm':>8} {'first/warm':>10}")
        print(f"   {'':<12} {'':<21} {'ms':>8} {'ms':>8} {'ms':>8} {'':>10}   {'M instr':>8} {'M instr':>8} {'M instr':>8}")
        for name, (function, label, make) in scenarios.items():
            init, first, warm = bench.wall(function, make)
            line = f"   {name:<12} {label:<21} {init:8.2f} {first:8.2f} {warm:8.2f} {first / warm:9.2f}x"
            if callgrind:
                i_init, i_first, i_warm = bench.instructions(function, make)
                line += f"   {i_init / 1e6:8.3f} {i_first / 1e6:8.3f} {i_warm / 1e6:8.3f} {i_first / i_warm:9.2f}x"
            print(line, flush=True)
        if args.no_peers:
            return
        try:
            peers.ensure_peers(lb.ROOT)
        except (OSError, RuntimeError, subprocess.CalledProcessError) as error:
            print(f"   peers skipped: they could not be installed ({error})")
            return
        listing = lb.load_event("list", "list.json")
        for peer, argv in peers.commands(lb.ROOT).items():
            init, first, warm = bench.wall(peer, lambda _: lb.event_for(listing), argv=argv, env=bench.peer_env(peer))
            print(f"   {peer:<12} {'GET /connections':<21} {init:8.2f} {first:8.2f} {warm:8.2f} {first / warm:9.2f}x"
                  "   (no instruction count: interpreters under valgrind)", flush=True)
    finally:
        bench.close()


if __name__ == "__main__":
    main()
