import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { generateTree } from './generate.ts';

const MiB = 1024 * 1024;

/** The data kinds of hot-path.ts. */
export type DataKind = 'lp' | 'random' | 'tree';
export const DATA_KINDS: readonly DataKind[] = ['lp', 'random', 'tree'];

/** One MiB of InfluxDB line protocol; `seed` varies the values so that blocks differ. */
function lineProtocolBlock(seed: number): Buffer {
  const lines: string[] = [];
  let size = 0;
  let time = 1_763_700_000_000_000_000n + BigInt(seed) * 1_000_000_000n;
  for (let index = 0; size < MiB; index += 1) {
    const value = ((seed * 7919 + index * 104_729) % 100_000) / 1000;
    const line = `weather,station=st-${(seed + index) % 256},region=eu-${index % 5} temperature=${value},humidity=${((value * 7) % 100).toFixed(2)},pressure=${(980 + (index % 60)).toFixed(1)},samples=${index}i ${time}\n`;
    time += 1_000_000_000n;
    lines.push(line);
    size += line.length;
  }
  return Buffer.from(lines.join('')).subarray(0, MiB);
}

/** Writes `totalMiB` of `kind` into `directory` (created). */
export async function generateData(kind: DataKind, directory: string, totalMiB: number): Promise<void> {
  if (kind === 'tree') {
    await generateTree(directory, totalMiB);
    return;
  }
  await mkdir(directory, { recursive: true });
  // Line protocol: 256 MiB files ("one big .lp file or a few"); random bytes: 64 MiB files.
  const perFile = kind === 'lp' ? 256 : 64;
  let seed = 0;
  for (let written = 0, file = 0; written < totalMiB; file += 1) {
    const name = kind === 'lp' ? `metrics-${file}.lp` : `random-${file}.bin`;
    const handle = await open(join(directory, name), 'w');
    try {
      for (let block = 0; block < perFile && written < totalMiB; block += 1, written += 1)
        await handle.write(kind === 'lp' ? lineProtocolBlock(seed++) : randomBytes(MiB));
    } finally {
      await handle.close();
    }
  }
}

/** Regular files and their total bytes under `directory`. */
export async function treeSize(directory: string): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  for (const entry of await readdir(directory, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    files += 1;
    bytes += (await stat(join(entry.parentPath, entry.name))).size;
  }
  return { files, bytes };
}
