#!/usr/bin/env bash
# Run every test: unit tests, the data suite on SQLite and Postgres, hostile guests, the API
# and the CLI end to end, devices over HTTP and MQTT, the browser tests. Needs PostgreSQL on
# 127.0.0.1:5432 (database `test`, trust auth) or LINLI_TEST_POSTGRES_URL, and an MQTT broker
# on 127.0.0.1:1883 or LINLI_TEST_MQTT_URL (both started or installed here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_postgres
ensure_mqtt
ensure_browser
build_plugins
cargo test --workspace "$@"
