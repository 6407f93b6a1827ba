#!/usr/bin/env bash
# Brings a fresh machine to where bk builds: Node >= 22 (installed from the npm registry into
# .tools/ when the system Node is older), pnpm 10, the workspace's dependencies, and a build.
# Safe to run again: each step is skipped when already done, and the build (scripts/build.mjs)
# rebuilds only the packages whose sources changed, so on a built tree this takes well under a
# second. Source it to keep the PATH. BK_SETUP_NO_BUILD=1 stops before the build.
set -euo pipefail
BK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

# A Node installed into .tools/ by an earlier run is used without asking the system Node its version.
if [ -x "$BK_ROOT/.tools/node22/node_modules/.bin/node" ] || [ "$(node_major)" -lt 22 ]; then
  if [ ! -x "$BK_ROOT/.tools/node22/node_modules/.bin/node" ]; then
    echo "setup: installing Node 22 into .tools/node22 (system Node is $(node --version 2>/dev/null || echo missing))" >&2
    npm install --prefix "$BK_ROOT/.tools/node22" --no-audit --no-fund --loglevel=error node@22 >&2
  fi
  export PATH="$BK_ROOT/.tools/node22/node_modules/.bin:$PATH"
fi

# pnpm 10 goes into .tools/pnpm10 (never --global: run by the Node installed above, a global
# install lands in that Node's own prefix, a folder not on PATH) and is put on PATH from there.
# The copy in .tools/ is used without asking any other pnpm its version: `pnpm --version` alone
# costs about a second.
pnpm_major() { pnpm --version 2>/dev/null | cut -d. -f1 || echo 0; }
if [ -x "$BK_ROOT/.tools/pnpm10/node_modules/.bin/pnpm" ] || [ "$(pnpm_major)" != "10" ]; then
  if [ ! -x "$BK_ROOT/.tools/pnpm10/node_modules/.bin/pnpm" ]; then
    echo "setup: installing pnpm 10 into .tools/pnpm10" >&2
    npm install --prefix "$BK_ROOT/.tools/pnpm10" --no-audit --no-fund --loglevel=error pnpm@10 >&2
  fi
  export PATH="$BK_ROOT/.tools/pnpm10/node_modules/.bin:$PATH"
  hash -r
fi

cd "$BK_ROOT"
# pnpm runs the Node on PATH; keep it from trying to manage its own.
export COREPACK_ENABLE_STRICT=0
if [ ! -d node_modules/.pnpm ] || [ pnpm-lock.yaml -nt node_modules/.modules.yaml ]; then
  pnpm install --frozen-lockfile --reporter=append-only >&2
fi
# scripts/build.mjs touches the stamp after each build it completes; when nothing the packages are
# built from is newer than that, even starting Node to compare dist/ with src/ is skipped (find
# takes milliseconds, a Node process a few hundred on a busy machine).
build_stamp=node_modules/.bk-build-stamp
changed_since_build() {
  [ ! -f "$build_stamp" ] && return 0
  [ -n "$(find packages tsup.base.ts tsconfig.base.json scripts/build.mjs \( -name node_modules -o -name dist -o -name build -o -name test \) -prune -o -newer "$build_stamp" -print -quit)" ]
}
if [ -z "${BK_SETUP_NO_BUILD:-}" ] && changed_since_build; then
  node scripts/build.mjs >&2
fi
