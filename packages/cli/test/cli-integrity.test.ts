import { createHash } from 'node:crypto';
import { open, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, removeTempDirs, runBk, runBkJson, tempDir } from './bk-process.ts';

/** About 4 MiB of text that compresses but does not repeat: numbered lines with a running hash. */
function variedText(): string {
  const lines: string[] = [];
  let seed = 'bk';
  for (let line = 0; line < 60_000; line += 1) {
    seed = createHash('sha1').update(seed).digest('hex');
    lines.push(
      `${String(line).padStart(6, '0')} level=info msg="request served" id=${seed.slice(0, 16)} ms=${line % 97}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

let project: string;
let archive: string;

beforeAll(async () => {
  assertBuilt();
  project = await tempDir('integrity');
  await writeFile(join(project, 'app.log'), variedText());
  await writeFile(join(project, 'small.txt'), 'before the damage\n');
  await writeFile(
    join(project, 'bk.config.json'),
    JSON.stringify({
      target: 'backups',
      components: [{ kind: 'files', name: 'logs', root: '.', paths: ['app.log'] }],
    }),
  );
  const made = await runBkJson<{ key: string; size: number }>(['backup'], { cwd: project });
  expect(made.code, made.stderr).toBe(0);
  archive = join(project, 'backups', made.json.key);
  expect(made.json.size).toBeGreaterThan(256 * 1024);
  const handle = await open(archive, 'r+');
  try {
    const middle = Math.floor((await stat(archive)).size / 2);
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, middle);
    byte[0]! ^= 0x5a;
    await handle.write(byte, 0, 1, middle);
  } finally {
    await handle.close();
  }
});

afterAll(removeTempDirs);

describe('a damaged archive (end to end)', () => {
  it('fails bk verify with exit 4 naming the entry', async () => {
    const human = await runBk(['verify'], { cwd: project });
    expect(human.code, human.stderr).toBe(4);
    expect(human.stderr).toMatch(/^bk: .*\nentry: logs\/app\.log\n$/);
    const json = await runBkJson<{ error: { code: string; entry: string } }>(['verify'], { cwd: project });
    expect(json.code).toBe(4);
    expect(json.json.error).toMatchObject({ code: 'BK_INTEGRITY', entry: 'logs/app.log' });
  });

  it('fails bk restore with exit 4 naming the entry, and writes no file for it', async () => {
    const restoreTo = join(project, 'restored');
    const restored = await runBkJson<{ error: { code: string; entry: string } }>(
      ['restore', '--to', restoreTo],
      {
        cwd: project,
      },
    );
    expect(restored.code, restored.stderr).toBe(4);
    expect(restored.json.error).toMatchObject({ code: 'BK_INTEGRITY', entry: 'logs/app.log' });
    expect(restored.stderr).toContain('entry: logs/app.log');
    const left = await readdir(restoreTo, { recursive: true }).catch(() => []);
    expect(left.filter((path) => path.includes('app.log'))).toEqual([]);
  });
});
