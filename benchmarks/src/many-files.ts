/**
 * Many small files: bk backup, verify and restore of a generated tree of tiny files beside
 * `tar -c | pigz -p2 -6` and `pigz -dc | tar -x`, in files per second, with peak RSS and the
 * bytes each stores. The tree is generated before any timing starts.
 *
 *   node benchmarks/src/many-files.ts --files 500000 [--files 2000000] [--dir /tmp/bk-many]
 */
import { execSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type Measurement, measure } from './measure.ts';

const { values } = parseArgs({
  options: {
    files: { type: 'string', multiple: true, default: ['500000'] },
    dir: { type: 'string', default: '/tmp/bk-many-files' },
  },
});
const BK = join(import.meta.dirname, '../../packages/cli/dist/bin.js');
const PER_DIRECTORY = 100;

/** `count` files of 0–128 bytes of config-like text, 100 per directory, 100 directories per folder. */
function generate(directory: string, count: number): void {
  let seed = 12_345;
  const next = () => {
    seed = (seed * 1_103_515_245 + 12_345) & 0x7fffffff;
    return seed;
  };
  for (let index = 0; index < count; index += 1) {
    const folder = join(
      directory,
      `d${String(Math.floor(index / PER_DIRECTORY / 100)).padStart(4, '0')}`,
      `s${String(Math.floor(index / PER_DIRECTORY) % 100).padStart(2, '0')}`,
    );
    if (index % PER_DIRECTORY === 0) mkdirSync(folder, { recursive: true });
    const size = next() % 129;
    const text = `# file ${index}\nkey=${next().toString(36)}\n`.repeat(8).slice(0, size);
    writeFileSync(join(folder, `f${index}.conf`), text);
  }
}

function bytesUnder(directory: string): number {
  return readdirSync(directory).reduce((sum, name) => sum + statSync(join(directory, name)).size, 0);
}

interface Row {
  command: string;
  result: Measurement;
  files: number;
  peer?: string;
}

function fmt(value: number, digits = 1): string {
  return value.toFixed(digits);
}

const rows: string[] = [];
for (const countText of values.files!) {
  const files = Number(countText);
  const root = join(values.dir!, String(files));
  rmSync(root, { recursive: true, force: true });
  const tree = join(root, 'tree');
  const store = join(root, 'store');
  const peerArchive = join(root, 'peer.tar.gz');
  mkdirSync(store, { recursive: true });
  process.stderr.write(`generating ${files} files…\n`);
  generate(tree, files);
  const entries = files + Math.ceil(files / PER_DIRECTORY) + Math.ceil(files / PER_DIRECTORY / 100);
  const bk = `node ${BK} --target file://${store} --quiet`;
  const peerOut = join(root, 'peer-out');
  const bkOut = join(root, 'bk-out');
  mkdirSync(peerOut);
  const measured: Row[] = [];
  const run = async (command: string, shell: string, peer?: string) => {
    process.stderr.write(`${command}…\n`);
    // Flushes dirty pages so one row's writes are not paid for by the next.
    execSync('sync');
    measured.push({ command, result: await measure(shell), files: entries, ...(peer ? { peer } : {}) });
  };
  const peerBackup = 'tar -c │ pigz -p2 -6 > file';
  const peerRestore = 'pigz -dc │ tar -x';
  await run(peerBackup, `tar -C ${tree} -c . | pigz -p2 -6 > ${peerArchive}`);
  await run('bk backup (file://)', `${bk} backup --path ${tree}`, peerBackup);
  await run('bk verify', `${bk} verify`);
  await run(peerRestore, `pigz -dc ${peerArchive} | tar -C ${peerOut} -x`);
  await run('bk restore', `${bk} restore --to ${bkOut}`, peerRestore);
  const peerBytes = statSync(peerArchive).size;
  const bkBytes = bytesUnder(store);
  rows.push(
    `\n### ${files.toLocaleString('en-US')} files of 0–128 bytes (${entries.toLocaleString('en-US')} entries)\n`,
  );
  rows.push('| command | seconds | files/s | CPU s | peak RSS MiB | speed vs peer |');
  rows.push('|---|---:|---:|---:|---:|---:|');
  for (const row of measured) {
    const peer = measured.find((other) => other.command === row.peer);
    const ratio = peer ? `${fmt(peer.result.seconds / row.result.seconds, 2)}× ${row.peer}` : '';
    rows.push(
      `| ${row.command} | ${fmt(row.result.seconds)} | ${Math.round(row.files / row.result.seconds).toLocaleString('en-US')} | ${fmt(row.result.cpuSeconds)} | ${Math.round(row.result.peakRssMiB)} | ${ratio} |`,
    );
  }
  rows.push(
    `\nStored: bk ${fmt(bkBytes / 1024 / 1024)} MiB (archive, entry index, sidecar) against ${fmt(peerBytes / 1024 / 1024)} MiB for tar │ pigz -6: ${fmt(bkBytes / peerBytes, 2)}×.`,
  );
  rmSync(root, { recursive: true, force: true });
}
console.log(rows.join('\n'));
