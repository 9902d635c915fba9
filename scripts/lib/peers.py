"""The list function's peers in Python (boto3) and Node.js (AWS SDK v3), for scripts/bench.

bench/peers/ holds GET /connections as a team would otherwise write it in either
language: a custom-runtime bootstrap that creates its DynamoDB client at
start-up and runs the same Query as the Rust list. Both read what the Rust
functions read from the environment (AWS_LAMBDA_RUNTIME_API, AWS_REGION,
AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, CONNECTIONS_TABLE), so
lambda_bench.function_env serves them as it serves the Rust binaries.

    import peers
    peers.ensure_peers(ROOT)          # installs on first use, then a no-op
    for name, argv in peers.commands(ROOT).items():
        subprocess.Popen(argv, env=env, ...)

Standard library only.
"""

import hashlib
import os
import shutil
import subprocess
import sys


def _paths(root):
    peers = os.path.join(root, "bench", "peers")
    return {
        "venv": os.path.join(root, ".venv", "peer-python"),
        "requirements": os.path.join(peers, "python", "requirements.txt"),
        "bootstrap": os.path.join(peers, "python", "bootstrap"),
        "node": os.path.join(peers, "node"),
        "index": os.path.join(peers, "node", "index.mjs"),
    }


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _ensure_python(paths):
    """.venv/peer-python holding exactly requirements.txt, (re)created when it changed."""
    venv, requirements = paths["venv"], paths["requirements"]
    python = os.path.join(venv, "bin", "python")
    stamp = os.path.join(venv, ".requirements-sha256")
    wanted = _sha256(requirements)
    if os.access(python, os.X_OK) and _read(stamp) == wanted:
        return
    print(f"== installing {os.path.relpath(requirements)} into {os.path.relpath(venv)}", file=sys.stderr)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run(["python3", "-m", "venv", venv], check=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", requirements],
                   check=True)
    with open(stamp, "w") as f:
        f.write(wanted + "\n")


def _ensure_node(paths):
    """`npm ci` in bench/peers/node unless node_modules already holds what package-lock.json pins."""
    directory = paths["node"]
    if not shutil.which("node") or not shutil.which("npm"):
        raise RuntimeError(f"node and npm are needed for {directory}")
    lock = _sha256(os.path.join(directory, "package-lock.json"))
    stamp = os.path.join(directory, "node_modules", ".lock-sha256")
    if _read(stamp) == lock:
        return
    print(f"== npm ci --prefix {os.path.relpath(directory)}", file=sys.stderr)
    subprocess.run(["npm", "ci", "--prefix", directory, "--no-audit", "--no-fund", "--ignore-scripts",
                    "--loglevel=error"], check=True)
    with open(stamp, "w") as f:
        f.write(lock + "\n")


def ensure_peers(root):
    """Installs what the peers need, unless it is already installed as pinned."""
    paths = _paths(root)
    _ensure_python(paths)
    _ensure_node(paths)


def commands(root):
    """The argv that starts each peer (its environment is the caller's)."""
    paths = _paths(root)
    return {
        "python": [os.path.join(paths["venv"], "bin", "python"), paths["bootstrap"]],
        "node": [shutil.which("node") or "node", paths["index"]],
    }
