# Pinned tools, each in its own virtualenv under .venv/ (never the system Python:
# checkov and moto pin conflicting packages).
MOTO_PIN="moto[server]==5.2.5"
CARGO_LAMBDA_PIN="cargo-lambda==1.9.2 ziglang==0.17.0"
CFN_LINT_PIN="cfn-lint==1.58.0"
CHECKOV_PIN="checkov==3.3.30"
SCHEMATHESIS_PIN="schemathesis==4.32.5"

# ensure_venv NAME REQUIREMENT... : (re)creates .venv/NAME unless it already holds exactly these pins.
ensure_venv() {
    local name=$1
    shift
    local dir=".venv/$name"
    if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.pins" 2>/dev/null)" = "$*" ]; then
        return 0
    fi
    echo "== installing $* into $dir"
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check "$@"
    echo "$*" >"$dir/.pins"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for_http URL SECONDS: fails loudly when nothing answers in time.
wait_for_http() {
    python3 - "$1" "$2" <<'PY'
import sys, time, urllib.request, urllib.error
url, deadline = sys.argv[1], time.time() + float(sys.argv[2])
while time.time() < deadline:
    try:
        urllib.request.urlopen(url, timeout=1)
        sys.exit(0)
    except urllib.error.HTTPError:
        sys.exit(0)
    except Exception:
        time.sleep(0.2)
sys.exit(f"nothing answered at {url}")
PY
}

# ensure_browser: Debian's Chromium for the settings page's browser tests. Installed
# with apt-get when missing, which takes root; anyone else is told what to run.
ensure_browser() {
    if [ -x /usr/bin/chromium ]; then
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        echo "scripts/test: /usr/bin/chromium is missing; as root: apt-get install chromium chromium-driver" >&2
        exit 1
    fi
    echo "== installing chromium and chromium-driver (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    [ -x /usr/bin/chromium ] || { echo "scripts/test: apt-get did not install /usr/bin/chromium" >&2; exit 1; }
}

# ensure_node_modules DIR: `npm ci` in DIR unless its node_modules already holds
# exactly what DIR/package-lock.json pins.
ensure_node_modules() {
    local dir=$1
    command -v npm >/dev/null || { echo "scripts/test: node and npm are needed for $dir" >&2; exit 1; }
    local lock
    lock=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
    if [ "$(cat "$dir/node_modules/.lock-sha256" 2>/dev/null)" = "$lock" ]; then
        return 0
    fi
    echo "== npm ci --prefix $dir"
    npm ci --prefix "$dir" --no-audit --no-fund --ignore-scripts --loglevel=error
    echo "$lock" >"$dir/node_modules/.lock-sha256"
}
