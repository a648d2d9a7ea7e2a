#!/usr/bin/env bash
# Run every test: unit tests, the data suite on SQLite and Postgres, hostile guests, the API
# and the CLI end to end. Needs PostgreSQL on 127.0.0.1:5432 (database `test`, trust auth)
# or LINLI_TEST_POSTGRES_URL.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_postgres
build_plugins
cargo test --workspace "$@"
