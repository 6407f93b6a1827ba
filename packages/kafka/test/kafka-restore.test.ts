import { deepStrictEqual, strictEqual } from 'node:assert/strict';
import { backup, MemoryStorage, restore } from '@bk/core';
import { Admin, Consumer, Producer } from '@platformatic/kafka';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { kafka } from '../src/index.ts';
import {
  committedOffsets,
  createTopics,
  namePrefix,
  startCluster,
  type TestCluster,
} from './kafka-cluster.ts';

let source: TestCluster;
let target: TestCluster;
const shapes = `${namePrefix}shapes`;
const trimmed = `${namePrefix}trimmed`;
const storage = new MemoryStorage();
let name: string;

interface Seen {
  offset: string;
  timestamp: string;
  key: string | null;
  value: string | null;
  headers: [string | null, string | null][];
}

/** Every record of a partition, read with a plain Fetch (not the component's code). */
async function fetchAll(bootstrap: string, topic: string, partition: number): Promise<Seen[]> {
  const consumer = new Consumer({
    clientId: 'bk-test',
    groupId: 'bk-test-reader',
    bootstrapBrokers: [bootstrap],
  });
  try {
    const metadata = await consumer.metadata({ topics: [topic] });
    const leader = metadata.topics.get(topic)!.partitions[partition]!.leader;
    const seen: Seen[] = [];
    let next = 0n;
    for (;;) {
      const response = await consumer.fetch({
        node: leader,
        topics: [
          {
            topicId: topic,
            partitions: [
              {
                partition,
                fetchOffset: next,
                partitionMaxBytes: 1 << 20,
                currentLeaderEpoch: -1,
                lastFetchedEpoch: -1,
              },
            ],
          },
        ],
        maxWaitTime: 10,
        minBytes: 0,
        maxBytes: 1 << 20,
      });
      const result = response.responses[0]!.partitions[0]!;
      if (next === 0n && result.logStartOffset > 0n) next = result.logStartOffset;
      if (next >= result.highWatermark) return seen;
      if (next < result.logStartOffset) next = result.logStartOffset;
      for (const batch of result.records ?? []) {
        for (const record of batch.records) {
          const offset = batch.firstOffset + BigInt(record.offsetDelta);
          if (offset < next) continue;
          seen.push({
            offset: offset.toString(),
            timestamp: (batch.firstTimestamp + record.timestampDelta).toString(),
            key: record.key === null ? null : record.key.toString('hex'),
            value: record.value === null ? null : record.value.toString('hex'),
            headers: record.headers.map(([key, value]) => [
              key?.toString('hex') ?? null,
              value?.toString('hex') ?? null,
            ]),
          });
        }
        next = batch.firstOffset + BigInt(batch.lastOffsetDelta) + 1n;
      }
    }
  } finally {
    await consumer.close(true);
  }
}

const binary = Buffer.from(Array.from({ length: 256 }, (_, index) => index));

beforeAll(async () => {
  source = await startCluster('source');
  target = await startCluster('target');
  await createTopics(source.bootstrap, [
    { name: shapes, partitions: 2 },
    { name: trimmed, partitions: 1 },
  ]);
  const producer = new Producer({ clientId: 'bk-test', bootstrapBrokers: [source.bootstrap] });
  try {
    const headers = new Map<Buffer, Buffer>([
      [Buffer.from('dup'), Buffer.from('1')],
      [Buffer.from('dup'), Buffer.from('2')],
      [Buffer.from('nothing'), null as unknown as Buffer],
    ]);
    await producer.send({
      messages: [
        {
          topic: shapes,
          partition: 0,
          key: Buffer.from('k'),
          value: Buffer.from('v'),
          timestamp: 1_600_000_000_000n,
          headers,
        },
        { topic: shapes, partition: 0, value: Buffer.from('no key'), timestamp: 1_600_000_000_001n },
        { topic: shapes, partition: 0, key: Buffer.from('tombstone'), timestamp: 1_600_000_000_002n },
        {
          topic: shapes,
          partition: 1,
          key: binary,
          value: Buffer.concat([binary, Buffer.from('\n"\\')]),
          timestamp: 1_700_000_000_000n,
        },
      ],
    });
    // Three years earlier than the batch before: sent alone, as the seeding producer cannot hold it in the same batch.
    await producer.send({
      messages: [
        {
          topic: shapes,
          partition: 0,
          key: Buffer.alloc(0),
          value: Buffer.alloc(0),
          timestamp: 1_500_000_000_000n,
        },
      ],
    });
    await producer.send({
      messages: Array.from({ length: 10 }, (_, index) => ({
        topic: trimmed,
        partition: 0,
        value: Buffer.from(`t${index}`),
      })),
    });
  } finally {
    await producer.close();
  }
  const admin = new Admin({ clientId: 'bk-test', bootstrapBrokers: [source.bootstrap] });
  try {
    // Retention removed the first four records; "late" had committed before them, "ahead" after the last.
    await admin.deleteRecords({ topics: [{ name: trimmed, partitions: [{ partition: 0, offset: 4n }] }] });
    await admin.alterConsumerGroupOffsets({
      groupId: `${namePrefix}late`,
      topics: [{ name: trimmed, partitionOffsets: [{ partition: 0, offset: 2n }] }],
    });
    await admin.alterConsumerGroupOffsets({
      groupId: `${namePrefix}middle`,
      topics: [{ name: trimmed, partitionOffsets: [{ partition: 0, offset: 7n }] }],
    });
    await admin.alterConsumerGroupOffsets({
      groupId: `${namePrefix}ahead`,
      topics: [{ name: trimmed, partitionOffsets: [{ partition: 0, offset: 10n }] }],
    });
  } finally {
    await admin.close();
  }
  name = (
    await backup({ storage, components: [kafka({ brokers: [source.bootstrap], topics: [shapes, trimmed] })] })
  ).name;
});

afterAll(async () => {
  await source?.stop();
  await target?.stop();
});

describe('@bk/kafka restore', () => {
  it('brings back null and empty keys and values, binary bytes, repeated and null headers, and old timestamps; a produce retried after a lost answer is not duplicated', async () => {
    target.double?.dropProduceResponses(1);
    await restore({ storage, name, restorers: [kafka({ brokers: [target.bootstrap] })] });
    for (const partition of [0, 1]) {
      deepStrictEqual(
        await fetchAll(target.bootstrap, shapes, partition),
        await fetchAll(source.bootstrap, shapes, partition),
      );
    }
    const [first] = await fetchAll(target.bootstrap, shapes, 0);
    deepStrictEqual(first?.headers, [
      [Buffer.from('dup').toString('hex'), Buffer.from('1').toString('hex')],
      [Buffer.from('dup').toString('hex'), Buffer.from('2').toString('hex')],
      [Buffer.from('nothing').toString('hex'), null],
    ]);
    if (target.double) {
      strictEqual(target.double.log(shapes, 0)?.highWatermark, 4n);
      // Four batches (partition 0 split where timestamps jump back three years) and the one retried.
      strictEqual(target.double.requests.filter((request) => request.startsWith('Produce')).length, 5);
      strictEqual(target.double.requests.filter((request) => request.startsWith('InitProducerId')).length, 1);
    }
  });

  it('translates offsets across a retention gap: below the log start to the first record, inside to the same record, at the end to the new end', async () => {
    const restored = await fetchAll(target.bootstrap, trimmed, 0);
    deepStrictEqual(
      restored.map((record) => Buffer.from(record.value!, 'hex').toString()),
      ['t4', 't5', 't6', 't7', 't8', 't9'],
    );
    const first = Number(restored[0]!.offset);
    deepStrictEqual(await committedOffsets(target.bootstrap, `${namePrefix}late`), {
      [`${trimmed}/0`]: first,
    });
    deepStrictEqual(await committedOffsets(target.bootstrap, `${namePrefix}middle`), {
      [`${trimmed}/0`]: first + 3,
    });
    deepStrictEqual(await committedOffsets(target.bootstrap, `${namePrefix}ahead`), {
      [`${trimmed}/0`]: first + 6,
    });
  });

  it('with "overwrite", appends after the records already there and commits offsets pointing into the appended copy', async () => {
    const result = await restore({
      storage,
      name,
      restorers: [kafka({ brokers: [target.bootstrap], topics: [shapes, trimmed] })],
      conflict: 'overwrite',
    });
    const restored = await fetchAll(target.bootstrap, trimmed, 0);
    strictEqual(restored.length, 12);
    const second = Number(restored[6]!.offset);
    deepStrictEqual(await committedOffsets(target.bootstrap, `${namePrefix}middle`), {
      [`${trimmed}/0`]: second + 3,
    });
    deepStrictEqual(await committedOffsets(target.bootstrap, `${namePrefix}ahead`), {
      [`${trimmed}/0`]: second + 6,
    });
    const details = result.components.kafka?.details as {
      offsetMap: Record<string, Record<string, { runs: string[][] }>>;
    };
    deepStrictEqual(details.offsetMap[trimmed]?.['0']?.runs, [['4', String(second), 6]]);
  });

  it('with "skip", leaves a topic that holds records and its groups as they are', async () => {
    const before = await fetchAll(target.bootstrap, trimmed, 0);
    const offsets = await committedOffsets(target.bootstrap, `${namePrefix}middle`);
    await restore({ storage, name, restorers: [kafka({ brokers: [target.bootstrap] })], conflict: 'skip' });
    deepStrictEqual(await fetchAll(target.bootstrap, trimmed, 0), before);
    deepStrictEqual(await committedOffsets(target.bootstrap, `${namePrefix}middle`), offsets);
  });

  it('refuses a topic with fewer partitions than recorded, and restores under another name with topicMap', async () => {
    const renamed = `${namePrefix}shapes-one`;
    await createTopics(target.bootstrap, [{ name: renamed, partitions: 1 }]);
    const refused = await restore({
      storage,
      name,
      restorers: [
        kafka({
          brokers: [target.bootstrap],
          topicMap: { [shapes]: renamed, [trimmed]: `${namePrefix}trimmed-copy` },
        }),
      ],
      conflict: 'overwrite',
    }).then(
      () => undefined,
      (error: unknown) => error,
    );
    strictEqual((refused as { code?: string })?.code, 'BK_CONFLICT');
    await restore({
      storage,
      name,
      restorers: [
        kafka({
          brokers: [target.bootstrap],
          topicMap: { [shapes]: `${namePrefix}shapes-copy`, [trimmed]: `${namePrefix}trimmed-copy` },
        }),
      ],
      conflict: 'skip',
    });
    deepStrictEqual(
      (await fetchAll(target.bootstrap, `${namePrefix}shapes-copy`, 1)).map((record) => record.key),
      [binary.toString('hex')],
    );
  });
});
