import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, startBk } from './bk-process.ts';

// A preload that reports, in every process image that starts, its PID and node's flags.
let scratch: string;
let preload: string;
beforeAll(async () => {
  assertBuilt();
  scratch = await mkdtemp(join(tmpdir(), 'bk-tuning-'));
  preload = join(scratch, 'report.cjs');
  await writeFile(
    preload,
    "process.stderr.write('image ' + process.pid + ' [' + process.execArgv.join(' ') + ']\\n');\n",
  );
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

async function images(env: Record<string, string>): Promise<string[]> {
  const run = await startBk(['--version'], { env: { NODE_OPTIONS: `--require=${preload}`, ...env } }).done;
  expect(run.code).toBe(0);
  expect(run.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  return run.stderr.split('\n').filter((line) => line.startsWith('image '));
}

describe('the bk command’s runtime', () => {
  it('restarts itself once, in the same process, with the measured heap settings', async () => {
    const [first, second, ...more] = await images({});
    expect(more).toEqual([]);
    expect(second!.split(' ')[1]).toBe(first!.split(' ')[1]);
    expect(first).not.toContain('--max-semi-space-size');
    expect(second).toContain('--max-semi-space-size=2');
    expect(second).toContain('--initial-old-space-size=32');
  });

  it('keeps flags given to node, and can be turned off', async () => {
    const given = await images({ NODE_OPTIONS: `--require=${preload} --max-semi-space-size=8` });
    expect(given).toHaveLength(2);
    expect(given[1]).not.toContain('--max-semi-space-size=2');
    expect(given[1]).toContain('--initial-old-space-size=32');
    expect(await images({ BK_NODE_TUNING: '0' })).toHaveLength(1);
  });
});
