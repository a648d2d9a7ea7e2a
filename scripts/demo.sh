#!/usr/bin/env bash
# Run linli with the demo county (青山县 > 东溪镇 > 东村, 西村) and its plugins.
# Usage: ./scripts/demo.sh [extra `linli serve` flags]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
build_plugins

export LINLI_DATA_DIR="${LINLI_DATA_DIR:-.linli-demo}"
if [ -z "${LINLI_ADMIN_TOKEN:-}" ]; then
    if [ -f "$LINLI_DATA_DIR/admin-token" ]; then
        LINLI_ADMIN_TOKEN="$(cat "$LINLI_DATA_DIR/admin-token")"
    else
        mkdir -p "$LINLI_DATA_DIR"
        LINLI_ADMIN_TOKEN="demo-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
        (umask 077 && printf '%s' "$LINLI_ADMIN_TOKEN" > "$LINLI_DATA_DIR/admin-token")
    fi
    export LINLI_ADMIN_TOKEN
fi
listen="${LINLI_LISTEN:-127.0.0.1:8080}"
cat <<MSG
==> linli demo on http://$listen  (data in $LINLI_DATA_DIR; delete it to start over)
    open http://$listen in a browser: sign in as 13800000001 / linli-demo-2026 and vote (协商议事)
    admin token: $LINLI_ADMIN_TOKEN  (in $LINLI_DATA_DIR/admin-token)
    curl http://$listen/t/dongcun/p/hello/                      # visit counter
    curl -H "Authorization: Bearer $LINLI_ADMIN_TOKEN" http://$listen/api/v1/plugins
    sign in: curl http://$listen/api/v1/auth/password -H 'content-type: application/json' \\
               -d '{"phone":"13800000001","password":"linli-demo-2026"}'
    (the demo accounts follow once the server is up; README.md walks through grants and audit)
MSG
exec cargo run -p linli -- serve --listen "$listen" --demo-plugins target/wasm32-wasip2/release "$@"
