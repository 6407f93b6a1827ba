// Writes lines through a spooled DrArchiver as fast as it can, until it is killed. Usage:
// node --conditions=@bk/source --experimental-transform-types archiver-child.ts <spool dir>
// <storage root> <acknowledged log> <first line number>. Line n is `kill v=<n>i <base + n>`;
// once a write() resolves, "<first n> <count>" is appended to the log and fsync'd, so the log
// names every line the archiver acknowledged before the kill.

import { fdatasyncSync, openSync, writeSync } from 'node:fs';
import { FsStorage } from '@bk/storage-fs';
import { DrArchiver } from '../src/archiver/index.ts';

const [spoolDir, storageRoot, ackPath, firstArgument] = process.argv.slice(2) as [
  string,
  string,
  string,
  string,
];
const BASE = 1_795_236_814_000_000_000n;
const archiver = new DrArchiver({
  storage: new FsStorage({ root: storageRoot, fsync: false }),
  instance: 'kill',
  spool: { dir: spoolDir },
  // Small, short-lived segments: kills land while appending, uploading and deleting.
  maxFileBytes: 32 * 1024,
  maxFileAgeMs: 150,
  retryBaseMs: 10,
  retryMaxMs: 50,
});
const log = openSync(ackPath, 'a');
let next = Number(firstArgument);

async function writer(): Promise<void> {
  for (;;) {
    const first = next;
    const count = 1 + Math.floor(Math.random() * 40);
    next += count;
    const lines: string[] = [];
    for (let n = first; n < first + count; n += 1) lines.push(`kill v=${n}i ${BASE + BigInt(n)}`);
    await archiver.write('db', 'rp', lines);
    writeSync(log, `${first} ${count}\n`);
    fdatasyncSync(log);
  }
}

process.stdout.write('ready\n');
await Promise.all(Array.from({ length: 8 }, writer));
