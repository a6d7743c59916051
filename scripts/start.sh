#!/usr/bin/env bash
# The first command of the README: set everything up, then run Weft on its embedded defaults
# (SQLite under /var/lib/weft, the API on 127.0.0.1:7480 and /run/weft/weft.sock).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "[start] starting the controller; in another shell try: npx weft status" >&2
exec node controller/dist/main.js "$@"
