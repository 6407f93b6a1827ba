// Runs one PostgreSQL restore in a process of its own, so a test can kill the whole process
// part-way. Usage: node --conditions=@bk/source --experimental-transform-types restore-child.ts
// <spec.json>. The entry named by `stallAt` delivers all but its last 16 bytes, then the process
// prints `stalled` and waits to be killed.

import { readFile } from 'node:fs/promises';
import type { ComponentInfo, ConflictPolicy, Entry } from '@bk/core';
import { type PostgresOptions, postgres } from '../src/index.ts';

interface ChildSpec {
  options: PostgresOptions;
  info: ComponentInfo;
  backupName: string;
  conflict: ConflictPolicy;
  entries: Array<{ path: string; file: string }>;
  stallAt: string;
}

const spec = JSON.parse(await readFile(process.argv[2]!, 'utf8')) as ChildSpec;

async function* bodyOf(bytes: Buffer, stall: boolean): AsyncIterable<Uint8Array> {
  if (!stall) {
    yield bytes;
    return;
  }
  yield bytes.subarray(0, bytes.length - 16);
  process.stdout.write('stalled\n');
  setInterval(() => {}, 60_000);
  await new Promise(() => {});
}

async function* entries(): AsyncIterable<Entry> {
  for (const { path, file } of spec.entries) {
    yield { path, type: 'file', body: bodyOf(await readFile(file), path === spec.stallAt) };
  }
}

await postgres(spec.options).restore(entries(), {
  signal: new AbortController().signal,
  progress: () => {},
  backupName: spec.backupName,
  component: { name: spec.options.name ?? 'postgres', kind: 'postgres', info: spec.info },
  conflict: spec.conflict,
});
process.stdout.write('done\n');
