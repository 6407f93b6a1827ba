import { deepStrictEqual, strictEqual } from 'node:assert/strict';
import { backup, MemoryStorage, restore } from '@bk/core';
import { type KafkaDouble, startKafkaDouble } from '@bk/test-servers';
import { componentRoundTrip } from '@bk/test-suite';
import { Admin } from '@platformatic/kafka';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { kafka, type TopicRecord } from '../src/index.ts';
import { kcat, realCluster } from './kafka-cluster.ts';

// Doubles only: a three-broker source (partitions led by different brokers) and a one-broker target.
let source: KafkaDouble;
let target: KafkaDouble;

beforeAll(async () => {
  source = await startKafkaDouble({ nodes: 3 });
  target = await startKafkaDouble();
  const admin = new Admin({ clientId: 'bk-test', bootstrapBrokers: [source.bootstrap] });
  try {
    await admin.createTopics({ topics: ['replicated'], partitions: 3, replicas: 3 });
  } finally {
    await admin.close();
  }
  for (const partition of [0, 1, 2])
    await kcat(
      ['-b', source.bootstrap, '-P', '-t', 'replicated', '-p', String(partition)],
      `p${partition}-a\np${partition}-b\n`,
    );
});

afterAll(async () => {
  await source?.stop();
  await target?.stop();
});

describe.skipIf(realCluster)('@bk/kafka with partitions on several brokers', () => {
  it('reads each partition from its leader, records the replication factor, and restores onto a smaller cluster with replicationFactor', async () => {
    const storage = new MemoryStorage();
    const { name, manifest } = await backup({
      storage,
      components: [kafka({ brokers: [source.bootstrap] })],
    });
    const topics = manifest.components[0]!.info.details?.topics as TopicRecord[];
    deepStrictEqual(
      topics.map((topic) => [topic.name, topic.partitions, topic.replicationFactor]),
      [['replicated', 3, 3]],
    );
    const refused = await restore({
      storage,
      name,
      restorers: [kafka({ brokers: [target.bootstrap] })],
    }).then(
      () => undefined,
      (error: unknown) => error as Error,
    );
    strictEqual((refused as { code?: string } | undefined)?.code, 'BK_COMPONENT');
    strictEqual(
      /replication factor 3\).*set "replicationFactor"/.test(refused?.message ?? ''),
      true,
      refused?.message,
    );
    await restore({
      storage,
      name,
      restorers: [kafka({ brokers: [target.bootstrap], replicationFactor: 1 })],
    });
    const read = await kcat([
      '-b',
      target.bootstrap,
      '-C',
      '-t',
      'replicated',
      '-o',
      'beginning',
      '-e',
      '-q',
      '-f',
      '%p %s\\n',
    ]);
    deepStrictEqual(
      read
        .split('\n')
        .filter((line) => line !== '')
        .sort(),
      ['0 p0-a', '0 p0-b', '1 p1-a', '1 p1-b', '2 p2-a', '2 p2-b'],
    );
  });
});

describe.skipIf(realCluster)('@bk/test-suite componentRoundTrip on KafkaComponent', () => {
  componentRoundTrip(
    it,
    async () => {
      const broker = await startKafkaDouble();
      const admin = new Admin({ clientId: 'bk-test', bootstrapBrokers: [broker.bootstrap] });
      const topics = ['suite-a', 'suite-b', 'suite-empty'];
      return {
        component: kafka({ brokers: [broker.bootstrap], chunkBytes: 64 }),
        seed: async () => {
          await admin.createTopics({
            topics: ['suite-a'],
            partitions: 2,
            configs: [{ name: 'retention.ms', value: '3600000' }],
          });
          await admin.createTopics({ topics: ['suite-b', 'suite-empty'], partitions: 1 });
          for (const partition of [0, 1])
            await kcat(
              ['-b', broker.bootstrap, '-P', '-t', 'suite-a', '-p', String(partition), '-K:', '-H', 'h=1'],
              'k1:one\nk2:two\nk3:three\n',
            );
          await kcat(['-b', broker.bootstrap, '-P', '-t', 'suite-b', '-p', '0'], `${'x'.repeat(5000)}\n`);
          await admin.alterConsumerGroupOffsets({
            groupId: 'suite-group',
            topics: [
              {
                name: 'suite-a',
                partitionOffsets: [
                  { partition: 0, offset: 2n },
                  { partition: 1, offset: 3n },
                ],
              },
            ],
          });
        },
        snapshot: async () => {
          const listed = (await admin.listTopics()).filter((topic) => topics.includes(topic)).sort();
          const records: Record<string, string> = {};
          for (const topic of listed) {
            records[topic] = await kcat([
              '-b',
              broker.bootstrap,
              '-C',
              '-t',
              topic,
              '-o',
              'beginning',
              '-e',
              '-q',
              '-f',
              '%p|%o|%T|%k|%s|%h\\n',
            ]).then((out) => out.split('\n').sort().join('\n'));
          }
          const [offsets] = await admin.listConsumerGroupOffsets({ groups: ['suite-group'] });
          return {
            topics: listed,
            records,
            offsets: (offsets?.topics ?? []).flatMap((topic) =>
              topic.partitions
                .filter((partition) => partition.committedOffset >= 0n)
                .map((partition) => `${topic.name}/${partition.partitionIndex}=${partition.committedOffset}`),
            ),
          };
        },
        reset: async () => {
          const existing = (await admin.listTopics()).filter((topic) => topics.includes(topic));
          if (existing.length > 0) await admin.deleteTopics({ topics: existing });
          if ((await admin.listGroups()).has('suite-group'))
            await admin.deleteGroups({ groups: ['suite-group'] });
        },
        cleanup: async () => {
          await admin.close();
          await broker.stop();
        },
      };
    },
    { timeout: 120_000 },
  );
});
