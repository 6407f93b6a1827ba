import { deepStrictEqual, ok, strictEqual } from 'node:assert/strict';
import { backup, MemoryStorage, restore } from '@bk/core';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { CLUSTER_ENTRY, type ClusterRecord, GROUPS_ENTRY, kafka } from '../src/index.ts';
import {
  committedOffsets,
  createTopics,
  kcat,
  namePrefix,
  startCluster,
  type TestCluster,
} from './kafka-cluster.ts';

let source: TestCluster;
let target: TestCluster;

const orders = `${namePrefix}orders`;
const events = `${namePrefix}events`;
const billing = `${namePrefix}billing`;
const audit = `${namePrefix}audit`;
const FORMAT = '%p|%o|%T|%K|%k|%S|%s|%h\\n';

/** Every record of every partition of `topic`, as kcat prints them (partition, offset, timestamp, key, value, headers). */
async function readAll(bootstrap: string, topic: string, partitions: number): Promise<string[]> {
  const lines: string[] = [];
  for (let partition = 0; partition < partitions; partition += 1) {
    const out = await kcat([
      '-b',
      bootstrap,
      '-C',
      '-t',
      topic,
      '-p',
      String(partition),
      '-o',
      'beginning',
      '-e',
      '-q',
      '-f',
      FORMAT,
    ]);
    lines.push(...out.split('\n').filter((line) => line !== ''));
  }
  return lines;
}

beforeAll(async () => {
  source = await startCluster('source');
  target = await startCluster('target');
  await createTopics(source.bootstrap, [
    { name: orders, partitions: 3, configs: { 'retention.ms': '86400000', 'cleanup.policy': 'delete' } },
    { name: events, partitions: 1 },
  ]);
  for (let partition = 0; partition < 3; partition += 1) {
    const input = Array.from(
      { length: 5 + partition },
      (_, index) => `order-${partition}-${index}:{"n":${index}}`,
    ).join('\n');
    await kcat(
      [
        '-b',
        source.bootstrap,
        '-P',
        '-t',
        orders,
        '-p',
        String(partition),
        '-K:',
        '-H',
        'trace=abc',
        '-H',
        'trace=def',
        '-H',
        'origin=kcat',
      ],
      `${input}\n`,
    );
  }
  await kcat(['-b', source.bootstrap, '-P', '-t', events, '-p', '0'], 'first\nsecond\nthird\nfourth\n');
  // billing reads part of orders and commits; audit reads everything (its offsets are each partition's end).
  await kcat([
    '-b',
    source.bootstrap,
    '-G',
    billing,
    '-X',
    'auto.offset.reset=earliest',
    '-c',
    '7',
    '-q',
    '-f',
    '%p %o\\n',
    orders,
  ]);
  await kcat([
    '-b',
    source.bootstrap,
    '-G',
    audit,
    '-X',
    'auto.offset.reset=earliest',
    '-c',
    '4',
    '-q',
    '-f',
    '%p %o\\n',
    events,
  ]);
});

afterAll(async () => {
  await source?.stop();
  await target?.stop();
});

describe('@bk/kafka against a broker, proven with kcat', () => {
  const storage = new MemoryStorage();
  let name: string;

  it('backs up topics, configs, records and group offsets', async () => {
    const billingOffsets = await committedOffsets(source.bootstrap, billing);
    strictEqual(
      Object.values(billingOffsets).reduce((sum, offset) => sum + offset, 0),
      7,
    );
    const component = kafka({
      brokers: [source.bootstrap],
      topicPattern: `^${namePrefix}(orders|events)$`,
      chunkBytes: 300,
    });
    const result = await backup({ storage, components: [component] });
    name = result.name;
    const recorded = result.manifest.components[0]!;
    const details = recorded.info?.details as { topics: ClusterRecord['topics']; groups: string[] };
    deepStrictEqual(
      details.topics.map((topic) => [topic.name, topic.partitions, topic.configs]),
      [
        [events, 1, {}],
        [orders, 3, { 'cleanup.policy': 'delete', 'retention.ms': '86400000' }],
      ],
    );
    deepStrictEqual(
      details.topics[1]!.cut.map((cut) => cut.endOffset),
      ['5', '6', '7'],
    );
    ok(details.groups.includes(billing) && details.groups.includes(audit));
  });

  it('restores into an empty broker: kcat reads every partition back identical, and kcat -G resumes where the group stopped', async () => {
    await restore({ storage, name, restorers: [kafka({ brokers: [target.bootstrap] })], conflict: 'fail' });
    deepStrictEqual(await readAll(target.bootstrap, orders, 3), await readAll(source.bootstrap, orders, 3));
    deepStrictEqual(await readAll(target.bootstrap, events, 1), await readAll(source.bootstrap, events, 1));
    deepStrictEqual(
      await committedOffsets(target.bootstrap, billing),
      await committedOffsets(source.bootstrap, billing),
    );
    deepStrictEqual(await committedOffsets(target.bootstrap, audit), { [`${events}/0`]: 4 });

    // The group resumes at the first record it had not consumed: the rest of every partition, nothing twice.
    const committed = await committedOffsets(source.bootstrap, billing);
    const expected = (await readAll(source.bootstrap, orders, 3))
      .map((line) => line.split('|'))
      .filter(([partition, offset]) => Number(offset) >= (committed[`${orders}/${partition}`] ?? 0))
      .map(([partition, offset]) => `${partition} ${offset}`)
      .sort();
    const resumed = await kcat([
      '-b',
      target.bootstrap,
      '-G',
      billing,
      '-X',
      'auto.offset.reset=earliest',
      '-c',
      String(expected.length),
      '-q',
      '-f',
      '%p %o\\n',
      orders,
    ]);
    deepStrictEqual(
      resumed
        .split('\n')
        .filter((line) => line !== '')
        .sort(),
      expected,
    );
  });

  it('refuses to restore over a topic that holds records under "fail", before writing anything', async () => {
    const before = await readAll(target.bootstrap, events, 1);
    const failed = await restore({
      storage,
      name,
      restorers: [kafka({ brokers: [target.bootstrap] })],
      conflict: 'fail',
    }).then(
      () => undefined,
      (error: unknown) => error,
    );
    strictEqual((failed as { code?: string })?.code, 'BK_CONFLICT');
    deepStrictEqual(await readAll(target.bootstrap, events, 1), before);
  });

  it('stores cluster.json and groups.json first, then the records in bounded chunks', async () => {
    const captured: string[] = [];
    await restore({
      storage,
      name,
      restorers: [
        {
          kind: 'kafka',
          name: 'kafka',
          async restore(entries) {
            for await (const entry of entries) {
              captured.push(entry.path);
              if (entry.body) for await (const _ of entry.body);
            }
            return { entries: captured.length, bytes: 0 };
          },
        },
      ],
    });
    deepStrictEqual(captured.slice(0, 2), [CLUSTER_ENTRY, GROUPS_ENTRY]);
    ok(captured.filter((path) => path.startsWith(`records/${orders}/2/`)).length > 1, captured.join(' '));
  });
});
