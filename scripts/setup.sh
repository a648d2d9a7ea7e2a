#!/usr/bin/env bash
# Shared by demo.sh, test.sh and .ci/run: what a fresh machine needs before building.
# Idempotent: safe to run every time.

# The Wasm target plugins are built for.
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "==> rustup target add wasm32-wasip2"
    rustup target add wasm32-wasip2
fi

# Build the first-party and example plugins (what the demo county installs).
build_plugins() {
    echo "==> building plugins for wasm32-wasip2"
    cargo build --release --target wasm32-wasip2 -p hello -p consultation -p elderly-care -p parking
}

# Start the local PostgreSQL if it is installed here but not running (the tests use it).
ensure_postgres() {
    if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
        return 0
    fi
    if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
        echo "==> starting PostgreSQL"
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
        for _ in $(seq 1 30); do
            pg_isready -q -h 127.0.0.1 -p 5432 && return 0
            sleep 1
        done
    fi
    echo "PostgreSQL is not reachable at 127.0.0.1:5432; set LINLI_TEST_POSTGRES_URL to one that is." >&2
    return 1
}

# Start the local Mosquitto if it is installed but not listening on 127.0.0.1:1883 (the device
# tests use it); install it first on a fresh Debian machine. Set LINLI_TEST_MQTT_URL to use
# another broker instead.
ensure_mqtt() {
    if [ -n "${LINLI_TEST_MQTT_URL:-}" ]; then
        return 0
    fi
    if (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
        return 0
    fi
    if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
        echo "==> apt-get install mosquitto"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q mosquitto >/dev/null \
            || { $sudo apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q mosquitto >/dev/null; }
    fi
    echo "==> starting Mosquitto on 127.0.0.1:1883"
    if [ -f /etc/mosquitto/mosquitto.conf ] && grep -q "^listener 1883" /etc/mosquitto/mosquitto.conf; then
        mkdir -p /run/mosquitto 2>/dev/null && chown mosquitto /run/mosquitto 2>/dev/null || true
        /usr/sbin/mosquitto -d -c /etc/mosquitto/mosquitto.conf || true
    else
        # Debian's default configuration has no listener line: give it a loopback one.
        local conf
        conf=$(mktemp /tmp/linli-mosquitto.XXXXXX.conf)
        printf 'listener 1883 127.0.0.1\nallow_anonymous true\n' > "$conf"
        /usr/sbin/mosquitto -d -c "$conf" || true
    fi
    for _ in $(seq 1 30); do
        (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null && return 0
        sleep 1
    done
    echo "Mosquitto is not reachable at 127.0.0.1:1883; set LINLI_TEST_MQTT_URL to a broker that is." >&2
    return 1
}

# The browser tests: Debian's Chromium (Playwright drives it; no browser download) with CJK
# fonts, and Playwright from npm (tests/browser/package-lock.json).
ensure_browser() {
    local missing=()
    for pkg in chromium fonts-noto-cjk; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "==> apt-get install ${missing[*]}"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}" >/dev/null \
            || { $sudo apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}" >/dev/null; }
    fi
    if ! command -v node >/dev/null 2>&1; then
        echo "Node.js is needed for the browser tests (apt-get install nodejs npm)." >&2
        return 1
    fi
    if [ ! -d tests/browser/node_modules/playwright-core ]; then
        echo "==> npm ci (tests/browser)"
        (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
    fi
}
