#!/usr/bin/env bash
# The README's first command: set everything up, then run Weft's main job on its embedded
# defaults (SQLite, the lab): build the images, bring up the lab, PXE-boot its servers, install
# the host OS on them, run a demo role of two guests behind a VIP, and print what an operator
# needs. `--servers N` (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
# The time the demo prints counts from here, setup included.
export WEFT_START_MS="$(date +%s%3N)"
bash scripts/setup.sh
exec npx tsx scripts/demo.ts "$@"
