import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { type KafkaDouble, startKafkaDouble } from '@bk/test-servers';
import { Admin } from '@platformatic/kafka';

/**
 * A Kafka cluster for a suite: the in-process broker double, or a real cluster when
 * `BK_TEST_KAFKA_BROKERS` (source) and `BK_TEST_KAFKA_TARGET_BROKERS` (restore target, an empty
 * cluster or one the suite may write to) name one (`host:port,host:port`). On a real cluster the
 * suite's topics and groups carry a random prefix, so runs never meet.
 */
export interface TestCluster {
  bootstrap: string;
  /** The double, when the cluster is one (fault injection, log inspection). */
  double?: KafkaDouble;
  stop(): Promise<void>;
}

export const realCluster = process.env.BK_TEST_KAFKA_BROKERS !== undefined;
/** Prefix of topic and group names: empty on a private double, random on a shared real cluster. */
export const namePrefix = realCluster ? `bk-${randomUUID().slice(0, 8)}-` : '';

export async function startCluster(role: 'source' | 'target'): Promise<TestCluster> {
  const real =
    role === 'source' ? process.env.BK_TEST_KAFKA_BROKERS : process.env.BK_TEST_KAFKA_TARGET_BROKERS;
  if (real) return { bootstrap: real, stop: async () => {} };
  const double = await startKafkaDouble();
  return { bootstrap: double.bootstrap, double, stop: () => double.stop() };
}

/** Runs `kcat` with `args` (and `input` on stdin); resolves with stdout, rejects with stderr (and when it is still running after `timeoutMs`). */
export function kcat(args: string[], input?: string, timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      'kcat',
      args,
      { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 256 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error)
          reject(
            new Error(
              `kcat ${args.join(' ')} failed: ${error.message}\nstdout: ${stdout.slice(0, 2000)}\n${stderr.slice(-2000)}`,
            ),
          );
        else resolve(stdout);
      },
    );
    child.stdin?.end(input ?? '');
  });
}

export async function createTopics(
  bootstrap: string,
  topics: { name: string; partitions: number; configs?: Record<string, string> }[],
): Promise<void> {
  const admin = new Admin({ clientId: 'bk-test', bootstrapBrokers: [bootstrap] });
  try {
    for (const topic of topics) {
      await admin.createTopics({
        topics: [topic.name],
        partitions: topic.partitions,
        replicas: 1,
        configs: Object.entries(topic.configs ?? {}).map(([name, value]) => ({ name, value })),
      });
    }
  } finally {
    await admin.close();
  }
}

/** Committed offsets of `group`, as `{ "topic/partition": offset }`. */
export async function committedOffsets(bootstrap: string, group: string): Promise<Record<string, number>> {
  const admin = new Admin({ clientId: 'bk-test', bootstrapBrokers: [bootstrap] });
  try {
    const [listed] = await admin.listConsumerGroupOffsets({ groups: [group] });
    const offsets: Record<string, number> = {};
    for (const topic of listed?.topics ?? [])
      for (const partition of topic.partitions)
        if (partition.committedOffset >= 0n)
          offsets[`${topic.name}/${partition.partitionIndex}`] = Number(partition.committedOffset);
    return offsets;
  } finally {
    await admin.close();
  }
}
