import { randomBytes } from 'node:crypto';
import { mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';

const MiB = 1024 * 1024;

/** One MiB of InfluxDB line protocol; `seed` varies values so blocks differ. */
function lineProtocolBlock(seed: number): Buffer {
  const lines: string[] = [];
  let size = 0;
  let time = 1_763_700_000_000_000_000n + BigInt(seed) * 1_000_000_000n;
  for (let index = 0; size < MiB; index += 1) {
    const value = ((seed * 7919 + index * 104_729) % 100_000) / 1000;
    const line = `cpu,host=edge-${(seed + index) % 64},region=eu-west-${index % 3} usage_user=${value},usage_system=${(value / 3).toFixed(3)},count=${index}i ${time}\n`;
    time += 10_000_000_000n;
    lines.push(line);
    size += line.length;
  }
  return Buffer.from(lines.join('')).subarray(0, MiB);
}

/**
 * Writes a mixed tree of `totalMiB`: three quarters line protocol in 64 MiB files, one quarter
 * random bytes in 32 MiB files, plus 2,000 small config-like files. Returns the directory.
 */
export async function generateTree(directory: string, totalMiB: number): Promise<string> {
  await mkdir(join(directory, 'influx'), { recursive: true });
  await mkdir(join(directory, 'blobs'), { recursive: true });
  await mkdir(join(directory, 'etc'), { recursive: true });
  const textMiB = Math.floor((totalMiB * 3) / 4);
  let seed = 0;
  for (let written = 0, file = 0; written < textMiB; file += 1) {
    const handle = await open(join(directory, 'influx', `shard-${file}.lp`), 'w');
    for (let block = 0; block < 64 && written < textMiB; block += 1, written += 1)
      await handle.write(lineProtocolBlock(seed++));
    await handle.close();
  }
  for (let written = textMiB, file = 0; written < totalMiB; file += 1) {
    const handle = await open(join(directory, 'blobs', `blob-${file}.bin`), 'w');
    for (let block = 0; block < 32 && written < totalMiB; block += 1, written += 1)
      await handle.write(randomBytes(MiB));
    await handle.close();
  }
  for (let file = 0; file < 2000; file += 1) {
    const handle = await open(join(directory, 'etc', `service-${file}.conf`), 'w');
    await handle.write(`# service ${file}\nlisten 127.0.0.1:${10_000 + file}\nworkers ${file % 16}\n`);
    await handle.close();
  }
  return directory;
}
