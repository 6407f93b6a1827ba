import { deepStrictEqual, ok, strictEqual, throws } from 'node:assert/strict';
import { backup, type ComponentInfo, inspect, list, MemoryStorage, planIncremental, restore } from '@bk/core';
import { recordedEntries } from '@bk/test-suite';
import { Admin } from '@platformatic/kafka';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { incrementalFrom, type KafkaComponent, kafka } from '../src/index.ts';
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
const topic = `${namePrefix}ledger`;
const lagging = `${namePrefix}lagging`;
const storage = new MemoryStorage();

async function values(bootstrap: string, partition: number): Promise<string[]> {
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
    '%k=%s\\n',
  ]);
  return out.split('\n').filter((line) => line !== '');
}

async function commit(bootstrap: string, group: string, partition: number, offset: bigint): Promise<void> {
  const admin = new Admin({ clientId: 'bk-test', bootstrapBrokers: [bootstrap] });
  try {
    await admin.alterConsumerGroupOffsets({
      groupId: group,
      topics: [{ name: topic, partitionOffsets: [{ partition, offset }] }],
    });
  } finally {
    await admin.close();
  }
}

beforeAll(async () => {
  source = await startCluster('source');
  target = await startCluster('target');
  await createTopics(source.bootstrap, [{ name: topic, partitions: 2 }]);
});

afterAll(async () => {
  await source?.stop();
  await target?.stop();
});

describe('@bk/kafka incremental chain', () => {
  it('backs up only what came after the parent’s cut, reports records retention removed in between, and restores the chain with every record once and offsets translated', async () => {
    await kcat(['-b', source.bootstrap, '-P', '-t', topic, '-p', '0', '-K:'], 'a:0\nb:1\nc:2\nd:3\ne:4\n');
    await kcat(['-b', source.bootstrap, '-P', '-t', topic, '-p', '1', '-K:'], 'x:0\ny:1\nz:2\n');
    await commit(source.bootstrap, lagging, 0, 1n);
    const full = await backup({
      storage,
      components: [kafka({ brokers: [source.bootstrap], topics: [topic] })],
    });
    const earlyP1 = await values(source.bootstrap, 1);

    await kcat(['-b', source.bootstrap, '-P', '-t', topic, '-p', '0', '-K:'], 'f:5\ng:6\n');
    await kcat(['-b', source.bootstrap, '-P', '-t', topic, '-p', '1', '-K:'], 'lost:3\nkept:4\n');
    const admin = new Admin({ clientId: 'bk-test', bootstrapBrokers: [source.bootstrap] });
    try {
      await admin.deleteRecords({ topics: [{ name: topic, partitions: [{ partition: 1, offset: 4n }] }] });
    } finally {
      await admin.close();
    }
    // Still behind: its offset points into the records the full backup holds.
    await commit(source.bootstrap, lagging, 0, 3n);
    await commit(source.bootstrap, lagging, 1, 4n);

    const parent = await inspect({ storage, name: full.name });
    const incremental = await backup({
      storage,
      parent: full.name,
      components: [
        kafka({
          brokers: [source.bootstrap],
          topics: [topic],
          incremental: { from: incrementalFrom(parent) },
        }),
      ],
    });
    const info = incremental.manifest.components[0]!.info;
    deepStrictEqual(info.details?.lost, [`${topic}[1] offsets 3–3`]);
    ok(info.notCaptured?.some((line) => line.includes(`${topic}[1] offsets 3–3`)));
    deepStrictEqual(
      (await recordedEntries(storage, incremental.manifest, 'kafka')).map((entry) => entry.path),
      [
        'cluster.json',
        'groups.json',
        `records/${topic}/0/${'5'.padStart(20, '0')}.ndjson`,
        `records/${topic}/1/${'4'.padStart(20, '0')}.ndjson`,
      ],
    );

    const result = await restore({
      storage,
      name: incremental.name,
      chain: true,
      restorers: [kafka({ brokers: [target.bootstrap] })],
    });
    strictEqual(result.chain?.length, 2);
    deepStrictEqual(await values(target.bootstrap, 0), await values(source.bootstrap, 0));
    deepStrictEqual(await values(target.bootstrap, 1), [...earlyP1, 'kept=4']);
    // Partition 0 is dense on both sides: the same offset; partition 1 lost offset 3, so the source's 4 is the target's 3.
    deepStrictEqual(await committedOffsets(target.bootstrap, lagging), {
      [`${topic}/0`]: 3,
      [`${topic}/1`]: 3,
    });
    const resumed = await kcat([
      '-b',
      target.bootstrap,
      '-G',
      lagging,
      '-c',
      '5',
      '-q',
      '-f',
      '%p %k\\n',
      topic,
    ]);
    deepStrictEqual(
      resumed
        .split('\n')
        .filter((line) => line !== '')
        .sort(),
      ['0 d', '0 e', '0 f', '0 g', '1 kept'],
    );
  });

  it('continues through planIncremental from the newest backup holding it, and refuses a parent that recorded no cut', async () => {
    const component = kafka({ brokers: [source.bootstrap], topics: [topic] });
    const plan = await planIncremental({ storage, components: [component] });
    const newest = (await list({ storage })).at(-1)!.name;
    strictEqual(plan.parent, newest);
    deepStrictEqual(plan.incrementalComponents, ['kafka']);
    const continued = plan.components[0] as KafkaComponent;
    deepStrictEqual(continued.options.incremental, {
      from: incrementalFrom(await inspect({ storage, name: newest })),
    });
    strictEqual(component.options.incremental, undefined);
    throws(
      () =>
        component.incremental({
          backupName: 'backup_20260101_000000',
          component: { name: 'kafka', kind: 'kafka', info: { capabilities: {} } as unknown as ComponentInfo },
          entries: async function* () {},
        }),
      /backup_20260101_000000" recorded no per-partition cut for kafka component "kafka"; take a full backup/,
    );
  });
});
