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
    cargo build --release --target wasm32-wasip2 -p hello
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
