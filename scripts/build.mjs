#!/usr/bin/env node
// Builds the workspace's packages (packages/*), only those whose output is out of date:
// a package is rebuilt when its dist/ is missing, or older than anything under its src/, its
// package.json, its tsup.config.ts, the shared tsup.base.ts or tsconfig.base.json, or the dist/
// of a workspace package it depends on (so a dependency rebuilt now rebuilds its dependents).
// The stale ones are built in one `pnpm -r` call, which keeps the dependency order and runs
// independent builds side by side. `--force` rebuilds every package.
//
// Plain JavaScript on purpose: it runs before anything is installed or built, on the Node the
// set-up found.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
let force = process.argv.includes('--force');
const sharedInputs = ['tsup.base.ts', 'tsconfig.base.json'].map((file) => join(root, file));

/** Newest and oldest mtime (ms) of the files under `path`; a missing path gives undefined. */
function mtimes(path) {
  let newest;
  let oldest;
  const visit = (current) => {
    let stats;
    try {
      stats = statSync(current);
    } catch {
      return;
    }
    if (stats.isDirectory()) {
      for (const child of readdirSync(current)) visit(join(current, child));
      return;
    }
    newest = newest === undefined ? stats.mtimeMs : Math.max(newest, stats.mtimeMs);
    oldest = oldest === undefined ? stats.mtimeMs : Math.min(oldest, stats.mtimeMs);
  };
  visit(path);
  return { newest, oldest };
}

const packagesDir = join(root, 'packages');
const packages = new Map();
for (const folder of readdirSync(packagesDir)) {
  const dir = join(packagesDir, folder);
  const manifestPath = join(dir, 'package.json');
  if (!existsSync(manifestPath)) continue;
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
  if (!manifest.scripts?.build) continue;
  // Peers (the storage packages a component loads on demand) are left external by tsup: a
  // rebuilt peer does not make its dependents stale.
  const dependencies = Object.keys({ ...manifest.dependencies });
  packages.set(manifest.name, { name: manifest.name, dir, dependencies });
}

const stale = new Map();
/** Whether `name` must be built; also true when a workspace dependency must be. */
function isStale(name) {
  if (stale.has(name)) return stale.get(name);
  const entry = packages.get(name);
  stale.set(name, false); // a cycle, should there be one, does not recurse forever
  let result = force;
  const built = mtimes(join(entry.dir, 'dist')).oldest;
  if (built === undefined) result = true;
  const inputs = [
    join(entry.dir, 'src'),
    join(entry.dir, 'package.json'),
    join(entry.dir, 'tsup.config.ts'),
    ...sharedInputs,
  ];
  for (const input of inputs) {
    const { newest } = mtimes(input);
    if (newest !== undefined && newest > built) result = true;
  }
  for (const dependency of entry.dependencies) {
    if (!packages.has(dependency)) continue;
    if (isStale(dependency)) result = true;
    const { newest } = mtimes(join(packages.get(dependency).dir, 'dist'));
    if (newest !== undefined && newest > built) result = true;
  }
  stale.set(name, result);
  return result;
}

const startedAt = new Date();
/**
 * Marks the tree as built as of when this script started (a file saved during the build stays
 * newer than the stamp): scripts/setup.sh skips this script while nothing is newer.
 */
function stamp() {
  const path = join(root, 'node_modules', '.bk-build-stamp');
  if (!existsSync(dirname(path))) return;
  writeFileSync(path, `${startedAt.toISOString()}\n`);
  utimesSync(path, startedAt, startedAt);
}

const toBuild = [...packages.keys()].filter(isStale).sort();
if (toBuild.length === 0) {
  process.stderr.write('build: every package is up to date\n');
  stamp();
  process.exit(0);
}
process.stderr.write(`build: ${toBuild.join(' ')}\n`);
const filters = toBuild.flatMap((name) => ['--filter', name]);
const result = spawnSync('pnpm', ['-r', ...filters, 'run', 'build'], {
  cwd: root,
  stdio: 'inherit',
});
if (result.status !== 0) process.exit(result.status ?? 1);
// Stamp only a tree that is built: checked again, not taken from the exit status alone.
stale.clear();
force = false;
const still = [...packages.keys()].filter(isStale);
if (still.length > 0) {
  process.stderr.write(`build: still out of date after building: ${still.join(' ')}\n`);
  process.exit(1);
}
stamp();
