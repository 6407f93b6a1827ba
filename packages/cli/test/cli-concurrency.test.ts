import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ListedBackup } from '../src/commands/list-command.ts';
import { assertBuilt, removeTempDirs, runBkJson, tempDir } from './bk-process.ts';

beforeAll(assertBuilt);
afterAll(removeTempDirs);

describe('concurrent backups (end to end)', () => {
  it('keeps two backups started in the same second as backup_… and backup_…_1', async () => {
    const data = await tempDir('same-second-data');
    await writeFile(join(data, 'file.txt'), 'x'.repeat(10_000));
    // Two processes rarely straddle a second boundary; try again with a fresh target if they did.
    for (let attempt = 1; ; attempt += 1) {
      const target = `file://${await tempDir('same-second-target')}`;
      const args = ['backup', '--target', target, '--path', data];
      const results = await Promise.all([
        runBkJson<{ name: string }>(args),
        runBkJson<{ name: string }>(args),
      ]);
      for (const result of results) expect(result.code, result.stderr).toBe(0);
      const names = results.map((result) => result.json.name).sort();
      const base = names[0]!;
      if (names[1] !== `${base}_1` && attempt < 5) continue;
      expect(names).toEqual([base, `${base}_1`]);
      const listed = await runBkJson<{ backups: ListedBackup[] }>(['ls', '--target', target]);
      expect(listed.json.backups.map((item) => item.name)).toEqual([base, `${base}_1`]);
      const verified = await runBkJson(['verify', `${base}_1`, '--target', target]);
      expect(verified.code, verified.stderr).toBe(0);
      return;
    }
  });
});
