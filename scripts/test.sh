#!/usr/bin/env bash
# Runs every check and every test, then prints one line: "N passed, N failed, N skipped".
# Checks that are not tests (type-check, lint, publint, package metadata) count as one test each.
set -uo pipefail
cd "$(dirname "$0")/.."
passed=0; failed=0; skipped=0
check() {
  local name="$1"; shift
  echo "== $name" >&2
  if "$@" >&2; then passed=$((passed + 1)); else echo "!! $name failed" >&2; failed=$((failed + 1)); fi
}
check "type-check (tsc --build)" pnpm exec tsc --build
check "lint and format (biome)" pnpm exec biome check .
check "publint" pnpm run --silent publint
check "package metadata (LICENSE, repository, ESM)" node scripts/check-packages.mjs

results=.vitest-results.json
rm -f "$results"
echo "== vitest" >&2
pnpm exec vitest run --reporter=default --reporter=json --outputFile="$results" >&2
vitest_status=$?
if [ -f "$results" ]; then
  read -r p f s < <(node -e '
    const r = require(process.argv[1]);
    console.log(r.numPassedTests, r.numFailedTests + (r.numFailedTestSuites && !r.numFailedTests ? r.numFailedTestSuites : 0), r.numPendingTests + r.numTodoTests);
  ' "$PWD/$results")
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
  if [ "$vitest_status" -ne 0 ] && [ "$f" -eq 0 ]; then failed=$((failed + 1)); fi
else
  failed=$((failed + 1))
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
