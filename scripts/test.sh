#!/usr/bin/env bash
# The test command: sets up everything (apt, npm, build), then lint, type check, and every
# test (unit and integration, which start real controllers, DHCP/TFTP clients, QEMU and
# libvirtd inside network namespaces of their own). Ends with one line of real counts:
# "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p .weft

status=0
step() { printf '\n== %s\n' "$1" >&2; }

step "setup"
if ! bash scripts/setup.sh; then
  echo "setup failed: see above" >&2
  echo "0 passed, 1 failed"
  exit 1
fi

step "lint"
npx eslint . && npx prettier --check . || { echo "lint failed" >&2; status=1; }

step "type check (sources and tests)"
npx tsc -b && npx tsc -p tsconfig.check.json || { echo "type check failed" >&2; status=1; }

step "tests"
results=.weft/vitest-results.json
rm -f "$results"
npx vitest run --reporter=default --reporter=json --outputFile.json="$results" "$@" || status=1

if [[ -f $results ]]; then
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const skipped = r.numPendingTests + r.numTodoTests;
    console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
  ' "$results"
else
  echo "the test run wrote no results" >&2
  echo "0 passed, 1 failed"
  status=1
fi
exit $status
