import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type KafkaDouble, startKafkaDouble } from '@bk/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, removeTempDirs, runBkJson, tempDir } from './bk-process.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

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

interface Made {
  name: string;
  parent: string | null;
  components: { name: string; incremental: boolean }[];
}

describe('bk backup --incremental with a "kafka" component against the Kafka double', () => {
  let source: KafkaDouble;
  let target: KafkaDouble;
  let workspace: string;
  let backupConfig: string;
  let restoreConfig: string;

  beforeAll(async () => {
    assertBuilt();
    [source, target] = await Promise.all([startKafkaDouble(), startKafkaDouble()]);
    workspace = await tempDir('kafka-incremental');
    const store = join(workspace, 'store');
    await writeFile(join(workspace, 'notes.txt'), 'notes\n');
    backupConfig = join(workspace, 'backup.json');
    await writeFile(
      backupConfig,
      JSON.stringify({
        target: store,
        components: [
          { kind: 'kafka', brokers: [source.bootstrap] },
          { kind: 'files', name: 'notes', root: workspace, paths: ['notes.txt'] },
        ],
      }),
    );
    restoreConfig = join(workspace, 'restore.json');
    await writeFile(
      restoreConfig,
      JSON.stringify({ target: store, components: [{ kind: 'kafka', brokers: [target.bootstrap] }] }),
    );
  });

  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
    await removeTempDirs();
  });

  it('ACCEPTANCE: two incrementals continue from the parent’s cut; the newest restores its chain with every record once and the group resuming where it was', async () => {
    const produce = (topic: string, lines: string) =>
      kcat(['-b', source.bootstrap, '-P', '-t', topic, '-K:'], lines);
    const names: string[] = [];
    async function backUp(...args: string[]): Promise<Made> {
      const made = await runBkJson<Made>(['--config', backupConfig, 'backup', '--incremental', ...args]);
      expect(made.code, made.stderr).toBe(0);
      names.push(made.json.name);
      await sleep(1100); // one backup name per second
      return made.json;
    }

    await produce('orders', 'a:1\nb:2\nc:3\n');
    const full = await backUp();
    expect(full.parent).toBeNull();
    expect(full.components.map((component) => component.incremental)).toEqual([false, false]);

    await produce('orders', 'd:4\ne:5\n');
    // The group consumes into the first incremental's records and commits offset 4.
    await kcat([
      '-b',
      source.bootstrap,
      '-G',
      'billing',
      '-X',
      'auto.offset.reset=earliest',
      '-c',
      '4',
      '-q',
      'orders',
    ]);
    const first = await backUp('--only', 'kafka');
    expect(first.parent).toBe(names[0]);
    expect(first.components).toEqual([expect.objectContaining({ name: 'kafka', incremental: true })]);

    await produce('orders', 'f:6\ng:7\n');
    await produce('payments', 'x:1\n'); // a topic the parent did not have: taken whole
    const second = await backUp('--only', 'kafka');
    expect(second.parent).toBe(names[1]);
    expect(second.components).toEqual([expect.objectContaining({ name: 'kafka', incremental: true })]);

    // Each link starts where its parent's cut ended, and holds one record chunk per partition it added to.
    const cuts = async (name: string) => {
      const inspected = await runBkJson<{
        components: {
          name: string;
          stats: { entries: number };
          info: {
            details: { topics: { name: string; cut: { startOffset: string; endOffset: string }[] }[] };
          };
        }[];
      }>(['--config', backupConfig, 'inspect', name]);
      expect(inspected.code, inspected.stderr).toBe(0);
      const kafka = inspected.json.components.find((component) => component.name === 'kafka')!;
      return {
        entries: kafka.stats.entries,
        cut: Object.fromEntries(
          kafka.info.details.topics.map((topic) => [
            topic.name,
            topic.cut.map((cut) => `${cut.startOffset}-${cut.endOffset}`),
          ]),
        ),
      };
    };
    expect(await cuts(names[1]!)).toEqual({ entries: 3, cut: { orders: ['3-5'] } });
    expect(await cuts(names[2]!)).toEqual({ entries: 4, cut: { orders: ['5-7'], payments: ['0-1'] } });

    const restored = await runBkJson<{ chain: { name: string }[] }>([
      '--config',
      restoreConfig,
      'restore',
      names[2]!,
      '--only',
      'kafka',
    ]);
    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.json.chain.map((link) => link.name)).toEqual(names);

    const read = (topic: string) =>
      kcat(['-b', target.bootstrap, '-C', '-t', topic, '-o', 'beginning', '-e', '-q', '-f', '%o %k %s\\n']);
    expect(await read('orders')).toBe('0 a 1\n1 b 2\n2 c 3\n3 d 4\n4 e 5\n5 f 6\n6 g 7\n');
    expect(await read('payments')).toBe('0 x 1\n');
    const resumed = await kcat([
      '-b',
      target.bootstrap,
      '-G',
      'billing',
      '-c',
      '3',
      '-q',
      '-f',
      '%o %k\\n',
      'orders',
    ]);
    expect(resumed).toBe('4 e\n5 f\n6 g\n');
  }, 120_000);
});
