import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type KafkaDouble, startKafkaDouble } from '@bk/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../src/index.ts';

let source: KafkaDouble;
let target: KafkaDouble;
let directory: string;

function kcat(args: string[], input = ''): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      'kcat',
      args,
      { timeout: 20_000, killSignal: 'SIGKILL' },
      (error, stdout, stderr) =>
        error ? reject(new Error(`kcat ${args.join(' ')}: ${error.message}\n${stderr}`)) : resolve(stdout),
    );
    child.stdin?.end(input);
  });
}

async function run(...argv: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, {
    stdout: { write: (chunk: string) => (stdout += chunk) },
    stderr: { write: (chunk: string) => (stderr += chunk) },
    env: {},
    cwd: directory,
  });
  return { code, stdout, stderr };
}

beforeAll(async () => {
  source = await startKafkaDouble();
  target = await startKafkaDouble();
  directory = await mkdtemp(join(tmpdir(), 'bk-cli-kafka-'));
  for (const [file, broker] of [
    ['source.json', source],
    ['target.json', target],
  ] as const) {
    await writeFile(
      join(directory, file),
      JSON.stringify({
        components: [
          { kind: 'kafka', brokers: [broker.bootstrap] },
          { kind: 'files', name: 'notes', root: directory, paths: ['source.json'] },
        ],
      }),
    );
  }
  await kcat(['-b', source.bootstrap, '-P', '-t', 'orders', '-K:'], 'a:1\nb:2\nc:3\n');
  await kcat([
    '-b',
    source.bootstrap,
    '-G',
    'billing',
    '-X',
    'auto.offset.reset=earliest',
    '-c',
    '2',
    '-q',
    'orders',
  ]);
});

afterAll(async () => {
  await source?.stop();
  await target?.stop();
  if (directory) await rm(directory, { recursive: true, force: true });
});

describe('bk with a "kafka" component', () => {
  it('backs up with --only kafka, shows it in inspect, and restores records and the group into another broker', async () => {
    const backedUp = await run('backup', '--config', 'source.json', '--target', 'backups', '--only', 'kafka');
    expect(backedUp.code, backedUp.stderr).toBe(0);

    const inspected = await run('inspect', '--target', 'backups');
    expect(inspected.code, inspected.stderr).toBe(0);
    expect(inspected.stdout).toMatch(/kafka {2}\(kafka\)/);
    expect(inspected.stdout).not.toContain('notes');
    expect(inspected.stdout).toContain('not captured: ACLs, client quotas');

    const restored = await run(
      'restore',
      '--config',
      'target.json',
      '--target',
      'backups',
      '--only',
      'kafka',
    );
    expect(restored.code, restored.stderr).toBe(0);
    const read = await kcat(['-b', target.bootstrap, '-C', '-t', 'orders', '-e', '-q', '-f', '%o %k %s\\n']);
    expect(read).toBe('0 a 1\n1 b 2\n2 c 3\n');
    const resumed = await kcat([
      '-b',
      target.bootstrap,
      '-G',
      'billing',
      '-c',
      '1',
      '-q',
      '-f',
      '%o %k\\n',
      'orders',
    ]);
    expect(resumed).toBe('2 c\n');
  });
});
