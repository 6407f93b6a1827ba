// Helpers for the DrArchiver crash tests: the kill -9 loop around archiver-child.ts and a
// read-back of every archived line.

import { spawn } from 'node:child_process';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { collect, gunzip, type Storage } from '@bk/core';
import { FsStorage } from '@bk/storage-fs';
import { DrArchiver, listArchivedFiles } from '../src/archiver/index.ts';

const CHILD = fileURLToPath(new URL('./archiver-child.ts', import.meta.url));

/** Every point line of every archived object, with the key it came from. */
export async function stored(
  storage: Storage,
  instance: string,
): Promise<Array<{ key: string; line: string }>> {
  const result: Array<{ key: string; line: string }> = [];
  const { files } = await listArchivedFiles({ storage, instance });
  for (const file of files) {
    const text = new TextDecoder().decode(await collect(gunzip(await storage.get(file.key))));
    for (const line of text.split('\n')) {
      if (line !== '' && !line.startsWith('#')) result.push({ key: file.key, line });
    }
  }
  return result;
}

export interface KillRun {
  storage: FsStorage;
  /** Line numbers whose write() had resolved before a kill (from the writers' fsync'd log). */
  acknowledged: Set<number>;
  /** How often each line number is stored. */
  stored: Map<number, number>;
  /** Segments left in the spool after the draining restart (expected: none). */
  leftInSpool: string[];
}

/**
 * Starts archiver-child.ts `kills` times on one spool, each killed with SIGKILL at a random
 * moment 0.3–1.5 s into its writing (each start first uploads what the last one left), then
 * drains the spool with a restart in this process and reads every stored line back.
 */
export async function killLoop(root: string, kills: number): Promise<KillRun> {
  const spool = join(root, 'spool');
  const bucket = join(root, 'bucket');
  const ackLog = join(root, 'acknowledged');
  await mkdir(root, { recursive: true });
  for (let round = 0; round < kills; round += 1) {
    const flags = ['--conditions=@bk/source', '--experimental-transform-types', '--no-warnings'];
    const child = spawn(
      process.execPath,
      [...flags, CHILD, spool, bucket, ackLog, String(round * 10_000_000)],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    const exited = new Promise((resolve) => child.on('close', resolve));
    for (let waited = 0; !output.includes('ready'); waited += 1) {
      if (waited > 1_500 || child.exitCode !== null) throw new Error(`the writer did not start: ${output}`);
      await sleep(20);
    }
    await sleep(300 + Math.random() * 1_200);
    if (child.exitCode !== null) throw new Error(`the writer stopped before the kill: ${output}`);
    child.kill('SIGKILL');
    await exited;
  }
  // The restart that drains what the last killed writer left.
  const storage = new FsStorage({ root: bucket, fsync: false });
  const archiver = new DrArchiver({ storage, instance: 'kill', spool: { dir: spool } });
  await archiver.close();
  const leftInSpool = (await readdir(spool)).filter((name) => name.endsWith('.spool'));

  const acknowledged = new Set<number>();
  for (const entry of (await readFile(ackLog, 'utf8')).split('\n')) {
    if (entry === '') continue;
    const [first, count] = entry.split(' ').map(Number) as [number, number];
    for (let n = first; n < first + count; n += 1) acknowledged.add(n);
  }
  const counts = new Map<number, number>();
  for (const { line } of await stored(storage, 'kill')) {
    const n = Number(/^kill v=(\d+)i /.exec(line)?.[1]);
    counts.set(n, (counts.get(n) ?? 0) + 1);
  }
  return { storage, acknowledged, stored: counts, leftInSpool };
}
