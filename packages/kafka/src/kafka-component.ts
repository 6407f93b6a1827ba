import {
  type BackupContext,
  type Component,
  ComponentError,
  type ComponentInfo,
  ConfigError,
  ConflictError,
  checkComponentConfig,
  checkComponentName,
  collect,
  type Entry,
  type IncrementalParent,
  isRecord,
  type Manifest,
  type OperationContext,
  type RestoreContext,
  type RestoreReport,
  throwIfAborted,
} from '@bk/core';
import {
  Admin,
  ConfigResourceTypes,
  ConfigSources,
  Consumer,
  FetchIsolationLevels,
  ListOffsetTimestamps,
  type MessageToProduce,
  Producer,
} from '@platformatic/kafka';
import { type OffsetRun, OffsetTranslation, translateThroughRuns } from './offset-translation.ts';
import { decodeRecord, encodeRecord, linesOf, type PartitionRecord } from './record-chunks.ts';

/**
 * Options of a {@link KafkaComponent}.
 *
 * @example
 * const options: KafkaOptions = { brokers: ['kafka-1:9092', 'kafka-2:9092'], topics: ['orders', 'payments'] };
 */
export interface KafkaOptions {
  /** The component's name, unique within one backup; default `kafka`. */
  name?: string;
  /** Bootstrap brokers, `host:port` each. */
  brokers: string[];
  /** The client id the brokers see; default `bk`. */
  clientId?: string;
  /** Back up only these topics (names). Default: every topic but the internal ones (`__consumer_offsets`, …). */
  topics?: string[];
  /** Back up only topics whose name matches this regular expression (with `topics`: either). */
  topicPattern?: string;
  /** Back up the committed offsets of only these consumer groups; default every group. */
  groups?: string[];
  /** On restore: topic names to write to instead of the recorded ones, `{ "orders": "orders-restored" }`. */
  topicMap?: Record<string, string>;
  /** On restore: the replication factor of topics created (default: the recorded one). */
  replicationFactor?: number;
  /**
   * Most bytes one Fetch asks for, and so the largest batch of records held in memory while
   * backing up; default 1 MiB (a batch bigger than this is still returned whole).
   */
  fetchBytes?: number;
  /** Largest record chunk (an archive entry) before a new one starts; default 1 MiB. Memory: about twice this. */
  chunkBytes?: number;
  /** Record bytes per produce request on restore; default 512 KiB (the broker's limit is `max.message.bytes`). */
  produceBytes?: number;
  /** Timeout of one request in milliseconds; default 30 000. */
  timeoutMs?: number;
  /**
   * Back up only the records after a parent backup's cut: `from` maps topic → partition → the
   * parent's end offset (see {@link incrementalFrom}). Topics and partitions the parent did not
   * have are backed up whole; metadata and group offsets are always complete.
   */
  incremental?: { from: Record<string, Record<string, string>> };
}

const CONFIG_FIELDS = [
  'kind',
  'name',
  'brokers',
  'clientId',
  'topics',
  'topicPattern',
  'groups',
  'topicMap',
  'replicationFactor',
  'fetchBytes',
  'chunkBytes',
  'produceBytes',
  'timeoutMs',
  'incremental',
];

/** The cluster's topics, configs and per-partition cut. */
export const CLUSTER_ENTRY = 'cluster.json';
/** Committed offsets of the consumer groups, read before the cut. */
export const GROUPS_ENTRY = 'groups.json';
/** The prefix of record chunks: `records/<topic>/<partition>/<first offset, 20 digits>.ndjson`. */
export const RECORDS_PREFIX = 'records/';
/** Largest timestamp delta (ms) within one produced batch: about 24.8 days. */
const MAX_DELTA = 2n ** 31n;

/** The layout version of `cluster.json`, `groups.json` and the chunks. */
export const FORMAT_VERSION = 1;

const NOT_CAPTURED = [
  'transaction markers and records of aborted transactions (records are read with isolation read_committed up to the last stable offset; committed transactional records are restored as plain records)',
  'ACLs, client quotas, SCRAM credentials and delegation tokens',
  'broker configuration and cluster-wide defaults: only topic-level overrides are captured',
  'sensitive topic configs (the broker does not return their values)',
  'the producer state (producer ids and sequence numbers) and leader epochs',
  'internal topics (__consumer_offsets, __transaction_state): group offsets are captured through the group APIs instead',
];

/**
 * bk reads no credential from the cluster; what records carry is the applications' data, which
 * bk cannot judge. What the cluster holds and bk does not read is named, so a restore says so.
 */
const SECRETS = {
  captured: [],
  notCaptured: [
    { kind: 'credentials' as const, what: 'SCRAM credentials and delegation tokens of the cluster' },
    {
      kind: 'password' as const,
      what: 'values of sensitive topic configs (the broker does not return them)',
    },
  ],
};

/** A partition as recorded at the cut. */
export interface PartitionCut {
  partition: number;
  /** The first offset still in the log when the backup started. */
  logStartOffset: string;
  /** The last stable offset (high watermark when no transaction is open) read at the start: records below it are backed up. */
  endOffset: string;
  /** Where this backup's records start: the log start, or in an incremental the parent's end (or the log start when retention passed it). */
  startOffset: string;
  /** In an incremental: the parent's end offset for this partition, when the parent had it. */
  parentEndOffset?: string;
  /** In an incremental: offsets `[first, last]` deleted by retention after the parent's cut, never backed up. */
  lost?: [string, string];
}

/** A topic as `cluster.json` records it. */
export interface TopicRecord {
  name: string;
  partitions: number;
  replicationFactor: number;
  /** Topic-level config overrides (config source "topic"), e.g. `{ "retention.ms": "86400000" }`. */
  configs: Record<string, string>;
  cut: PartitionCut[];
}

/** `cluster.json`. */
export interface ClusterRecord {
  format: number;
  /** Whether the records start at a parent backup's cut. */
  incremental: boolean;
  clusterId: string | null;
  brokers: number;
  topics: TopicRecord[];
}

/** One committed offset as `groups.json` records it. */
export interface CommittedOffset {
  topic: string;
  partition: number;
  offset: string;
  metadata: string | null;
}

/** One consumer group as `groups.json` records it. */
export interface GroupRecord {
  groupId: string;
  protocolType: string;
  state: string;
  offsets: CommittedOffset[];
}

interface Plan {
  cluster: ClusterRecord;
  groups: GroupRecord[];
  /** Offsets of groups for topics outside the selection, left out. */
  groupsOutside: string[];
}

function positiveInteger(value: unknown, field: string, context: string): void {
  if (value !== undefined && (!Number.isSafeInteger(value) || (value as number) < 1)) {
    throw new ConfigError(`${context}: "${field}" must be a positive integer.`);
  }
}

function stringList(value: unknown, field: string, context: string): void {
  if (
    value !== undefined &&
    (!Array.isArray(value) ||
      value.length === 0 ||
      !value.every((item) => typeof item === 'string' && item !== ''))
  ) {
    throw new ConfigError(`${context}: "${field}" must be a non-empty array of names.`);
  }
}

function chunkPath(topic: string, partition: number, firstOffset: bigint): string {
  return `${RECORDS_PREFIX}${topic}/${partition}/${firstOffset.toString().padStart(20, '0')}.ndjson`;
}

function parseChunkPath(path: string): { topic: string; partition: number } | undefined {
  const match = /^records\/([a-zA-Z0-9._-]+)\/(\d+)\/\d{20}\.ndjson$/.exec(path);
  return match ? { topic: match[1]!, partition: Number(match[2]) } : undefined;
}

function errorText(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const nested = (error as { errors?: unknown[] }).errors;
  const inner = Array.isArray(nested) && nested.length > 0 ? `: ${errorText(nested.at(-1))}` : '';
  return `${error.message.replace(/\.+$/, '')}${inner}`;
}

/**
 * Backs up Kafka logically through the brokers, online: topics with their partition counts,
 * replication factors and config overrides; every record of every partition from the log start
 * to the last stable offset read at the start (with offset, timestamp and its type, key, value and
 * headers), as NDJSON chunks; and the committed offsets of the consumer groups, read just before
 * the cut. Restore recreates missing topics, produces the records in order per partition with an
 * idempotent producer, and commits every group's offsets translated to the new offsets.
 *
 * @example
 * import { backup } from '@bk/core';
 * import { kafka } from '@bk/kafka';
 *
 * await backup({ storage, components: [kafka({ brokers: ['127.0.0.1:9092'] })] });
 */
export class KafkaComponent implements Component {
  readonly kind = 'kafka' as const;
  readonly name: string;
  readonly options: Readonly<KafkaOptions>;
  readonly #pattern: RegExp | undefined;
  #plan: Plan | undefined;
  /**
   * What earlier restores by this instance wrote, per target partition: the old→new runs, so a
   * later link of an incremental chain translates offsets that point into an earlier link.
   */
  readonly #restoredRuns = new Map<string, OffsetRun[]>();

  /**
   * Validates the options; opens no connection.
   *
   * @throws {ConfigError} naming the invalid option.
   */
  constructor(options: KafkaOptions) {
    const where = 'kafka component';
    if (!isRecord(options)) throw new ConfigError(`${where}: the options must be an object.`);
    const name = options.name ?? 'kafka';
    if (typeof name !== 'string') throw new ConfigError(`${where}: "name" must be a string.`);
    checkComponentName(name);
    const context = `kafka component "${name}"`;
    if (
      !Array.isArray(options.brokers) ||
      options.brokers.length === 0 ||
      !options.brokers.every((broker) => typeof broker === 'string' && /^[^\s:/]+:\d{1,5}$/.test(broker))
    ) {
      throw new ConfigError(
        `${context}: "brokers" must list bootstrap brokers as "host:port", e.g. ["127.0.0.1:9092"].`,
      );
    }
    if (options.clientId !== undefined && (typeof options.clientId !== 'string' || options.clientId === ''))
      throw new ConfigError(`${context}: "clientId" must be a non-empty string.`);
    stringList(options.topics, 'topics', context);
    stringList(options.groups, 'groups', context);
    let pattern: RegExp | undefined;
    if (options.topicPattern !== undefined) {
      try {
        pattern = new RegExp(options.topicPattern);
      } catch (error) {
        throw new ConfigError(
          `${context}: "topicPattern" is not a valid regular expression: ${(error as Error).message}`,
        );
      }
    }
    if (options.topicMap !== undefined) {
      if (
        !isRecord(options.topicMap) ||
        !Object.values(options.topicMap).every((to) => typeof to === 'string' && to !== '')
      )
        throw new ConfigError(`${context}: "topicMap" must map recorded topic names to new names.`);
    }
    positiveInteger(options.replicationFactor, 'replicationFactor', context);
    positiveInteger(options.fetchBytes, 'fetchBytes', context);
    positiveInteger(options.chunkBytes, 'chunkBytes', context);
    positiveInteger(options.produceBytes, 'produceBytes', context);
    positiveInteger(options.timeoutMs, 'timeoutMs', context);
    if (options.incremental !== undefined) {
      const from = isRecord(options.incremental) ? options.incremental.from : undefined;
      if (
        !isRecord(from) ||
        !Object.values(from).every(
          (partitions) =>
            isRecord(partitions) &&
            Object.values(partitions).every((offset) => typeof offset === 'string' && /^\d+$/.test(offset)),
        )
      )
        throw new ConfigError(
          `${context}: "incremental.from" must map topic → partition → offset (see incrementalFrom()).`,
        );
    }
    this.name = name;
    this.#pattern = pattern;
    this.options = { ...options, name };
  }

  /**
   * A copy of this component that backs up only the records after `parent`'s per-partition cut
   * (as `incremental: { from }`), for `bk backup --incremental` and core `planIncremental`.
   * Topics and partitions the parent did not have are taken whole; metadata and group offsets
   * are always complete, so a chain restore translates group offsets through every link.
   *
   * @throws {ConfigError} when the parent recorded no cut (not a kafka backup of this layout).
   */
  incremental(parent: IncrementalParent): KafkaComponent {
    const from = cutOf(parent.component.info, `Backup "${parent.backupName}"`, this.name);
    return new KafkaComponent({ ...this.options, incremental: { from } });
  }

  #connection() {
    return {
      clientId: this.options.clientId ?? 'bk',
      bootstrapBrokers: [...this.options.brokers],
      requestTimeout: this.options.timeoutMs ?? 30_000,
      connectTimeout: Math.min(this.options.timeoutMs ?? 30_000, 10_000),
      retries: 5,
      retryDelay: 250,
    };
  }

  #fail(what: string, error: unknown): ComponentError {
    return new ComponentError(
      this.name,
      `${what} failed on ${this.options.brokers.join(',')}: ${errorText(error)}. Check that the brokers are reachable and the client is allowed to describe topics and groups.`,
      { cause: error },
    );
  }

  #selected(topic: string): boolean {
    if (!this.options.topics && !this.#pattern) return !topic.startsWith('__');
    return (this.options.topics?.includes(topic) ?? false) || (this.#pattern?.test(topic) ?? false);
  }

  async #readPlan(admin: Admin, signal: AbortSignal): Promise<Plan> {
    const all = await admin.listTopics({ includeInternals: false });
    throwIfAborted(signal);
    const names = all.filter((topic) => this.#selected(topic)).sort();
    for (const wanted of this.options.topics ?? []) {
      if (!all.includes(wanted))
        throw new ConfigError(
          `kafka component "${this.name}": topic "${wanted}" does not exist on ${this.options.brokers.join(',')}.`,
        );
    }
    const metadata = await admin.metadata({ topics: names, autocreateTopics: false });
    const configs =
      names.length === 0
        ? []
        : await admin.describeConfigs({
            resources: names.map((resourceName) => ({
              resourceType: ConfigResourceTypes.TOPIC,
              resourceName,
            })),
            includeSynonyms: false,
          });
    throwIfAborted(signal);

    // Group offsets first, then the cut: every committed offset is then at or below the recorded end.
    const groupIds = [...(await admin.listGroups()).values()]
      .filter((group) => !this.options.groups || this.options.groups.includes(group.id))
      .sort((a, b) => (a.id < b.id ? -1 : 1));
    const groups: GroupRecord[] = [];
    const outside = new Set<string>();
    if (groupIds.length > 0) {
      const offsets = await admin.listConsumerGroupOffsets({ groups: groupIds.map((group) => group.id) });
      for (const group of groupIds) {
        const listed = offsets.find((entry) => entry.groupId === group.id);
        const committed: CommittedOffset[] = [];
        for (const topic of listed?.topics ?? []) {
          if (!names.includes(topic.name)) {
            outside.add(topic.name);
            continue;
          }
          for (const partition of topic.partitions) {
            if (partition.committedOffset < 0n) continue;
            committed.push({
              topic: topic.name,
              partition: partition.partitionIndex,
              offset: partition.committedOffset.toString(),
              metadata: partition.metadata ?? null,
            });
          }
        }
        committed.sort((a, b) =>
          a.topic === b.topic ? a.partition - b.partition : a.topic < b.topic ? -1 : 1,
        );
        groups.push({
          groupId: group.id,
          protocolType: group.protocolType,
          state: String(group.state),
          offsets: committed,
        });
      }
    }
    for (const wanted of this.options.groups ?? []) {
      if (!groupIds.some((group) => group.id === wanted))
        throw new ConfigError(
          `kafka component "${this.name}": consumer group "${wanted}" does not exist on ${this.options.brokers.join(',')}.`,
        );
    }

    const partitionsOf = (topic: string) =>
      Array.from(
        { length: metadata.topics.get(topic)?.partitionsCount ?? 0 },
        (_, partitionIndex) => partitionIndex,
      );
    const ends =
      names.length === 0
        ? []
        : await admin.listOffsets({
            topics: names.map((name) => ({
              name,
              partitions: partitionsOf(name).map((partitionIndex) => ({
                partitionIndex,
                timestamp: ListOffsetTimestamps.LATEST,
              })),
            })),
            isolationLevel: FetchIsolationLevels.READ_COMMITTED,
          });
    const starts =
      names.length === 0
        ? []
        : await admin.listOffsets({
            topics: names.map((name) => ({
              name,
              partitions: partitionsOf(name).map((partitionIndex) => ({
                partitionIndex,
                timestamp: ListOffsetTimestamps.EARLIEST,
              })),
            })),
          });
    const offsetOf = (listed: typeof ends, topic: string, partition: number) => {
      const found = listed
        .find((entry) => entry.name === topic)
        ?.partitions.find((entry) => entry.partitionIndex === partition);
      if (!found)
        throw new ComponentError(this.name, `ListOffsets returned nothing for ${topic}[${partition}].`);
      return found.offset;
    };
    const topics: TopicRecord[] = names.map((name) => {
      const described = metadata.topics.get(name);
      const overrides: Record<string, string> = {};
      for (const config of configs.find((entry) => entry.resourceName === name)?.configs ?? []) {
        if (
          config.configSource === ConfigSources.DYNAMIC_TOPIC_CONFIG &&
          typeof config.value === 'string' &&
          !config.isSensitive
        )
          overrides[config.name] = config.value;
      }
      return {
        name,
        partitions: described?.partitionsCount ?? 0,
        replicationFactor: described?.partitions[0]?.replicas.length ?? 1,
        configs: overrides,
        cut: partitionsOf(name).map((partition) => {
          const logStart = offsetOf(starts, name, partition);
          const end = offsetOf(ends, name, partition);
          const parentEnd = this.options.incremental?.from[name]?.[String(partition)];
          if (parentEnd === undefined)
            return {
              partition,
              logStartOffset: logStart.toString(),
              endOffset: end.toString(),
              startOffset: logStart.toString(),
            };
          const parent = BigInt(parentEnd);
          if (parent > end)
            throw new ConfigError(
              `kafka component "${this.name}": ${name}[${partition}] ends at ${end}, before the parent backup's cut ${parent}; the topic was recreated or truncated. Take a full backup to start a new chain.`,
            );
          const start = parent > logStart ? parent : logStart;
          return {
            partition,
            logStartOffset: logStart.toString(),
            endOffset: end.toString(),
            startOffset: start.toString(),
            parentEndOffset: parentEnd,
            ...(logStart > parent
              ? { lost: [parent.toString(), (logStart - 1n).toString()] as [string, string] }
              : {}),
          };
        }),
      };
    });
    return {
      cluster: {
        format: FORMAT_VERSION,
        incremental: this.options.incremental !== undefined,
        clusterId: metadata.id ?? null,
        brokers: metadata.brokers.size,
        topics,
      },
      groups,
      groupsOutside: [...outside].sort(),
    };
  }

  /**
   * Reads the topics, their configs, the groups' committed offsets and then each partition's
   * log start and last stable offset: the cut the backup that follows copies up to.
   *
   * @throws {ConfigError} when a selected topic or group does not exist.
   * @throws {ComponentError} when the brokers cannot be reached or refuse a request.
   */
  async describe(context: OperationContext): Promise<ComponentInfo> {
    throwIfAborted(context.signal);
    const admin = new Admin(this.#connection());
    let plan: Plan;
    try {
      plan = await this.#readPlan(admin, context.signal);
    } catch (error) {
      if (error instanceof ConfigError || error instanceof ComponentError) throw error;
      throw this.#fail('reading the cluster metadata', error);
    } finally {
      await admin.close().catch(() => {});
    }
    this.#plan = plan;
    let records = 0n;
    for (const topic of plan.cluster.topics)
      for (const cut of topic.cut) records += BigInt(cut.endOffset) - BigInt(cut.startOffset);
    const lost = plan.cluster.topics.flatMap((topic) =>
      topic.cut
        .filter((cut) => cut.lost)
        .map((cut) => `${topic.name}[${cut.partition}] offsets ${cut.lost![0]}–${cut.lost![1]}`),
    );
    return {
      capabilities: {
        incremental: true,
        pointInTime: false,
        consistentSnapshot: false,
        restoreIntoExisting: true,
        selectiveRestore: false,
      },
      secrets: SECRETS,
      notCaptured: [
        ...NOT_CAPTURED,
        ...(plan.groupsOutside.length > 0
          ? [`committed offsets for topics outside the selection: ${plan.groupsOutside.join(', ')}`]
          : []),
        ...(lost.length > 0
          ? [
              `records deleted by retention after the parent backup's cut, never backed up: ${lost.join(', ')}`,
            ]
          : []),
      ],
      details: {
        format: `bk kafka v${FORMAT_VERSION}: ${CLUSTER_ENTRY}, ${GROUPS_ENTRY}, NDJSON record chunks under ${RECORDS_PREFIX}<topic>/<partition>/`,
        incremental: plan.cluster.incremental,
        ...(lost.length > 0 ? { lost } : {}),
        clusterId: plan.cluster.clusterId,
        brokers: plan.cluster.brokers,
        topics: plan.cluster.topics.map((topic) => ({
          name: topic.name,
          partitions: topic.partitions,
          replicationFactor: topic.replicationFactor,
          configs: topic.configs,
          cut: topic.cut,
        })),
        groups: plan.groups.map((group) => group.groupId),
        recordsAtMost: records.toString(),
      },
    };
  }

  /**
   * `cluster.json`, `groups.json`, then each partition's records as NDJSON chunks of at most
   * `chunkBytes` (plus one record), in offset order.
   */
  async *backup(context: BackupContext): AsyncIterable<Entry> {
    if (!this.#plan) await this.describe(context);
    const plan = this.#plan!;
    this.#plan = undefined;
    yield jsonEntry(CLUSTER_ENTRY, plan.cluster);
    yield jsonEntry(GROUPS_ENTRY, plan.groups);
    const consumer = new Consumer({
      ...this.#connection(),
      groupId: `bk-backup-${this.name}`,
      isolationLevel: FetchIsolationLevels.READ_COMMITTED,
    });
    try {
      const metadata = await consumer.metadata({
        topics: plan.cluster.topics.map((topic) => topic.name),
        autocreateTopics: false,
      });
      for (const topic of plan.cluster.topics) {
        for (const cut of topic.cut) {
          const leader = metadata.topics.get(topic.name)?.partitions[cut.partition]?.leader ?? -1;
          yield* this.#partitionChunks(consumer, topic.name, cut, leader, context.signal);
        }
      }
    } catch (error) {
      if (error instanceof ComponentError || (error as Error).name === 'AbortedError') throw error;
      throw this.#fail('reading records', error);
    } finally {
      await consumer.close(true).catch(() => {});
    }
  }

  async *#records(
    consumer: Consumer,
    topic: string,
    cut: PartitionCut,
    leader: number,
    signal: AbortSignal,
  ): AsyncIterable<PartitionRecord> {
    const end = BigInt(cut.endOffset);
    let next = BigInt(cut.startOffset);
    const fetchBytes = this.options.fetchBytes ?? 1024 * 1024;
    while (next < end) {
      throwIfAborted(signal);
      const response = await consumer
        .fetch({
          node: leader,
          topics: [
            {
              topicId: topic,
              partitions: [
                {
                  partition: cut.partition,
                  fetchOffset: next,
                  partitionMaxBytes: fetchBytes,
                  currentLeaderEpoch: -1,
                  lastFetchedEpoch: -1,
                },
              ],
            },
          ],
          maxBytes: fetchBytes,
          minBytes: 1,
          maxWaitTime: 100,
        })
        .catch((error: unknown) => {
          throw new ComponentError(
            this.name,
            `fetching ${topic}[${cut.partition}] at offset ${next} failed: ${errorText(error)}. Records below the log start may have been deleted by retention while the backup ran; run it again.`,
            { cause: error },
          );
        });
      const partition = response.responses[0]?.partitions[0];
      if (!partition)
        throw new ComponentError(this.name, `Fetch returned nothing for ${topic}[${cut.partition}].`);
      if (partition.logStartOffset > next) {
        throw new ComponentError(
          this.name,
          `${topic}[${cut.partition}]: records ${next}–${partition.logStartOffset - 1n} were deleted (retention or DeleteRecords) while the backup ran; nothing was skipped silently. Run the backup again.`,
        );
      }
      const batches = partition.records ?? [];
      if (batches.length === 0) {
        throw new ComponentError(
          this.name,
          `${topic}[${cut.partition}]: no records at offset ${next}, below the recorded end ${end}. Was the partition truncated during the backup?`,
        );
      }
      for (const batch of batches) {
        const batchEnd = batch.firstOffset + BigInt(batch.lastOffsetDelta) + 1n;
        // Control batches (transaction markers) take offsets but hold no data.
        if ((batch.attributes & 0x20) === 0) {
          const logAppendTime = (batch.attributes & 0x08) !== 0;
          for (const record of batch.records) {
            const offset = batch.firstOffset + BigInt(record.offsetDelta);
            if (offset < next || offset >= end) continue;
            yield {
              offset,
              timestamp: logAppendTime ? batch.maxTimestamp : batch.firstTimestamp + record.timestampDelta,
              timestampType: logAppendTime ? 'LogAppendTime' : 'CreateTime',
              key: record.key,
              value: record.value,
              headers: record.headers.map(([key, value]) => [key ?? Buffer.alloc(0), value]),
            };
          }
        }
        if (batchEnd > next) next = batchEnd;
      }
    }
  }

  async *#partitionChunks(
    consumer: Consumer,
    topic: string,
    cut: PartitionCut,
    leader: number,
    signal: AbortSignal,
  ): AsyncIterable<Entry> {
    const chunkBytes = this.options.chunkBytes ?? 1024 * 1024;
    let lines: string[] = [];
    let size = 0;
    let first = 0n;
    const flush = (): Entry => {
      const bytes = Buffer.from(lines.join(''));
      const entry = jsonlessEntry(chunkPath(topic, cut.partition, first), bytes);
      lines = [];
      size = 0;
      return entry;
    };
    for await (const record of this.#records(consumer, topic, cut, leader, signal)) {
      if (lines.length === 0) first = record.offset;
      const line = encodeRecord(record);
      lines.push(line);
      size += line.length;
      if (size >= chunkBytes) yield flush();
    }
    if (lines.length > 0) yield flush();
  }

  /**
   * Recreates the backup's topics where missing (the recorded partition count, replication
   * factor and config overrides; `topicMap` renames), produces every record in order per
   * partition with an idempotent producer (key, value, headers and timestamp kept), then commits
   * each group's offsets translated to the new offsets.
   *
   * Conflicts: a topic with fewer partitions than recorded is always refused. A topic that already
   * holds records, or a group with committed offsets for a restored topic: `fail` throws
   * `ConflictError` before anything is written; `skip` leaves that topic (and the offsets for it)
   * or that group as they are; `overwrite` appends the records after the existing ones and
   * replaces the group's offsets for the restored partitions.
   *
   * @throws {ConflictError} as above, before anything is written.
   * @throws {ComponentError} for an unreadable entry, a refused request, or a group with active
   *   members (its offsets cannot be set while consumers run).
   */
  async restore(entries: AsyncIterable<Entry>, context: RestoreContext): Promise<RestoreReport> {
    const signal = context.signal;
    const iterator = entries[Symbol.asyncIterator]();
    const readJson = async (expected: string): Promise<unknown> => {
      const next = await iterator.next();
      if (next.done || next.value.path !== expected) {
        throw new ComponentError(
          this.name,
          `the backup does not start with ${CLUSTER_ENTRY} and ${GROUPS_ENTRY}; was it written by @bk/kafka?`,
        );
      }
      const text = Buffer.from(next.value.body ? await collect(next.value.body) : new Uint8Array()).toString(
        'utf8',
      );
      try {
        return JSON.parse(text);
      } catch (error) {
        throw new ComponentError(
          this.name,
          `entry "${expected}" is not valid JSON: ${(error as Error).message}`,
        );
      }
    };
    const cluster = (await readJson(CLUSTER_ENTRY)) as ClusterRecord;
    if (!isRecord(cluster) || cluster.format !== FORMAT_VERSION || !Array.isArray(cluster.topics))
      throw new ComponentError(
        this.name,
        `${CLUSTER_ENTRY} has format ${String((cluster as { format?: unknown })?.format)}; this @bk/kafka reads format ${FORMAT_VERSION}.`,
      );
    const groups = (await readJson(GROUPS_ENTRY)) as GroupRecord[];
    if (!Array.isArray(groups))
      throw new ComponentError(this.name, `${GROUPS_ENTRY} is not a list of groups.`);

    const mapName = (topic: string) => this.options.topicMap?.[topic] ?? topic;
    const admin = new Admin(this.#connection());
    const producer = new Producer({
      ...this.#connection(),
      idempotent: true,
      autocreateTopics: false,
      retries: 10,
    });
    let bytes = 0;
    let entryCount = 2;
    try {
      // Plan against the target before writing anything.
      const existing = new Set(await admin.listTopics({ includeInternals: false }));
      const present = cluster.topics.filter((topic) => existing.has(mapName(topic.name)));
      const targetMetadata =
        present.length > 0
          ? await admin.metadata({
              topics: present.map((topic) => mapName(topic.name)),
              autocreateTopics: false,
            })
          : undefined;
      const skippedTopics = new Set<string>();
      const withData: string[] = [];
      for (const topic of present) {
        const target = mapName(topic.name);
        const count = targetMetadata?.topics.get(target)?.partitionsCount ?? 0;
        if (count < topic.partitions) {
          throw new ConflictError(
            target,
            `Topic "${target}" exists with ${count} partitions but the backup recorded ${topic.partitions}; records would land in other partitions. Restore into a new name with "topicMap", or add partitions first. Nothing was written.`,
          );
        }
      }
      if (present.length > 0) {
        const listed = await admin.listOffsets({
          topics: present.map((topic) => ({
            name: mapName(topic.name),
            partitions: topic.cut.map((cut) => ({
              partitionIndex: cut.partition,
              timestamp: ListOffsetTimestamps.LATEST,
            })),
          })),
        });
        const starts = await admin.listOffsets({
          topics: present.map((topic) => ({
            name: mapName(topic.name),
            partitions: topic.cut.map((cut) => ({
              partitionIndex: cut.partition,
              timestamp: ListOffsetTimestamps.EARLIEST,
            })),
          })),
        });
        for (const topic of present) {
          const target = mapName(topic.name);
          const ends = listed.find((entry) => entry.name === target)?.partitions ?? [];
          const begins = starts.find((entry) => entry.name === target)?.partitions ?? [];
          if (
            ends.some(
              (end) =>
                end.offset >
                (begins.find((begin) => begin.partitionIndex === end.partitionIndex)?.offset ?? 0n),
            )
          )
            withData.push(target);
        }
      }
      // Groups on the target that already committed offsets for a restored topic.
      const restoredTopics = new Set(cluster.topics.map((topic) => mapName(topic.name)));
      const targetGroups = new Map(
        [...(await admin.listGroups()).values()].map((group) => [group.id, group]),
      );
      const wantedGroups = groups.filter((group) => group.offsets.length > 0);
      const groupsWithOffsets: string[] = [];
      const busyGroups: string[] = [];
      const presentGroups = wantedGroups.filter((group) => targetGroups.has(group.groupId));
      if (presentGroups.length > 0) {
        const ids = presentGroups.map((group) => group.groupId);
        const committed = await admin.listConsumerGroupOffsets({ groups: ids });
        const described = await admin.describeGroups({ groups: ids });
        for (const group of presentGroups) {
          if ((described.get(group.groupId)?.members.size ?? 0) > 0) busyGroups.push(group.groupId);
          const offsets = committed.find((entry) => entry.groupId === group.groupId);
          if (
            offsets?.topics.some(
              (topic) =>
                restoredTopics.has(topic.name) &&
                topic.partitions.some((partition) => partition.committedOffset >= 0n),
            )
          )
            groupsWithOffsets.push(group.groupId);
        }
      }
      if (context.conflict === 'fail' && (withData.length > 0 || groupsWithOffsets.length > 0)) {
        const what = [
          ...withData.map((topic) => `topic "${topic}" holds records`),
          ...groupsWithOffsets.map((group) => `group "${group}" has committed offsets`),
        ];
        throw new ConflictError(
          withData[0] ?? groupsWithOffsets[0]!,
          `Kafka at ${this.options.brokers.join(',')}: ${what.join(', ')}, and the conflict policy is "fail"; nothing was written (restore with "skip", or "overwrite" to append records and replace offsets, or map topics to new names with "topicMap").`,
        );
      }
      const skippedGroups = new Set(context.conflict === 'skip' ? groupsWithOffsets : []);
      if (context.conflict === 'skip') for (const topic of withData) skippedTopics.add(topic);
      const blocked = busyGroups.filter((group) => !skippedGroups.has(group));
      if (blocked.length > 0) {
        throw new ComponentError(
          this.name,
          `consumer group(s) ${blocked.map((group) => `"${group}"`).join(', ')} have active members on the target; stop their consumers so their offsets can be set. Nothing was written.`,
        );
      }

      // Topics.
      const created: string[] = [];
      for (const topic of cluster.topics) {
        const target = mapName(topic.name);
        if (existing.has(target)) continue;
        throwIfAborted(signal);
        const replicas = this.options.replicationFactor ?? topic.replicationFactor;
        await admin
          .createTopics({
            topics: [target],
            partitions: topic.partitions,
            replicas,
            configs: Object.entries(topic.configs).map(([name, value]) => ({ name, value })),
          })
          .catch((error: unknown) => {
            throw new ComponentError(
              this.name,
              `creating topic "${target}" (${topic.partitions} partitions, replication factor ${replicas}) failed: ${errorText(error)}. On a cluster with fewer brokers than the recorded replication factor, set "replicationFactor".`,
              { cause: error },
            );
          });
        created.push(target);
      }

      // Which committed offsets each partition must translate.
      const translations = new Map<string, OffsetTranslation>();
      const keyOf = (topic: string, partition: number) => `${topic}\0${partition}`;
      for (const topic of cluster.topics) {
        for (const cut of topic.cut) {
          const committed = groups.flatMap((group) =>
            group.offsets
              .filter((entry) => entry.topic === topic.name && entry.partition === cut.partition)
              .map((entry) => BigInt(entry.offset)),
          );
          translations.set(keyOf(topic.name, cut.partition), new OffsetTranslation(committed));
        }
      }

      // Records, partition after partition, in offset order.
      const produceBytes = this.options.produceBytes ?? 512 * 1024;
      const restored: Record<string, number> = {};
      let current: { topic: string; partition: number } | undefined;
      let pending: { record: PartitionRecord; target: string }[] = [];
      let pendingBytes = 0;
      const ends = new Map<string, bigint>();
      const flush = async () => {
        if (pending.length === 0 || !current) return;
        const { topic, partition } = current;
        const target = pending[0]!.target;
        const messages: MessageToProduce[] = pending.map(({ record }) => ({
          topic: target,
          partition,
          key: record.key ?? undefined,
          value: record.value ?? undefined,
          timestamp: record.timestamp,
          headers: new Map(
            record.headers.map(([key, value]) => [Buffer.from(key), value ?? (null as unknown as Buffer)]),
          ),
        }));
        throwIfAborted(signal);
        const result = await producer.send({ messages });
        const base = result.offsets?.find(
          (entry) => entry.topic === target && entry.partition === partition,
        )?.offset;
        if (base === undefined || base < 0n)
          throw new ComponentError(this.name, `producing to ${target}[${partition}] returned no offset.`);
        const translation = translations.get(keyOf(topic, partition))!;
        for (const [index, { record }] of pending.entries())
          translation.add(record.offset, base + BigInt(index));
        ends.set(keyOf(topic, partition), base + BigInt(pending.length));
        restored[target] = (restored[target] ?? 0) + pending.length;
        pending = [];
        pendingBytes = 0;
      };
      for (;;) {
        const next = await iterator.next();
        if (next.done) break;
        const entry = next.value;
        throwIfAborted(signal);
        if (entry.type !== undefined && entry.type !== 'file') continue;
        const location = parseChunkPath(entry.path);
        const topic = location && cluster.topics.find((candidate) => candidate.name === location.topic);
        if (!location || !topic || location.partition >= topic.partitions)
          throw new ComponentError(this.name, `unexpected entry "${entry.path}" in the backup.`);
        entryCount += 1;
        const target = mapName(topic.name);
        if (!current || current.topic !== location.topic || current.partition !== location.partition) {
          await flush();
          current = { topic: location.topic, partition: location.partition };
        }
        let lineNumber = 0;
        const counted = (async function* (body: AsyncIterable<Uint8Array>) {
          for await (const chunk of body) {
            bytes += chunk.byteLength;
            yield chunk;
          }
        })(entry.body ?? (async function* () {})());
        for await (const line of linesOf(counted)) {
          lineNumber += 1;
          if (skippedTopics.has(target)) continue;
          const record = decodeRecord(line, `${entry.path} line ${lineNumber}`, this.name);
          const size = (record.key?.length ?? 0) + (record.value?.length ?? 0) + 64;
          // A batch holds its records' timestamps as deltas from the first one. @platformatic/kafka
          // (dynamic-buffer 0.3.1) encodes a delta of 2^31 ms or more wrongly, so a batch never spans that.
          const first = pending[0]?.record.timestamp;
          const far =
            first !== undefined &&
            (record.timestamp - first >= MAX_DELTA || first - record.timestamp >= MAX_DELTA);
          if (pending.length > 0 && (pendingBytes + size > produceBytes || far)) await flush();
          pending.push({ record, target });
          pendingBytes += size;
        }
      }
      await flush();

      // Partitions' new ends, for offsets past every record (and partitions without records).
      const allEnds = await admin.listOffsets({
        topics: cluster.topics
          .filter((topic) => !skippedTopics.has(mapName(topic.name)))
          .map((topic) => ({
            name: mapName(topic.name),
            partitions: topic.cut.map((cut) => ({
              partitionIndex: cut.partition,
              timestamp: ListOffsetTimestamps.LATEST,
            })),
          })),
      });
      const offsetMap: Record<string, Record<string, unknown>> = {};
      for (const topic of cluster.topics) {
        const target = mapName(topic.name);
        if (skippedTopics.has(target)) continue;
        for (const cut of topic.cut) {
          const translation = translations.get(keyOf(topic.name, cut.partition))!;
          const end =
            ends.get(keyOf(topic.name, cut.partition)) ??
            allEnds
              .find((entry) => entry.name === target)
              ?.partitions.find((entry) => entry.partitionIndex === cut.partition)?.offset ??
            0n;
          translation.finish(end);
          const runs = this.#restoredRuns.get(keyOf(target, cut.partition)) ?? [];
          runs.push(...translation.kept);
          this.#restoredRuns.set(keyOf(target, cut.partition), runs);
          (offsetMap[target] ??= {})[cut.partition] = {
            records: translation.records,
            runs: translation.runs,
            ...(translation.runsTruncated ? { runsTruncated: true } : {}),
          };
        }
      }

      // Group offsets, translated.
      const committedGroups: Record<
        string,
        Record<string, Record<string, { from: string; to: string }>>
      > = {};
      const skippedGroupOffsets: string[] = [];
      const approximated: string[] = [];
      for (const group of wantedGroups) {
        if (skippedGroups.has(group.groupId)) continue;
        const byTopic = new Map<string, { partition: number; offset: bigint }[]>();
        for (const entry of group.offsets) {
          const target = mapName(entry.topic);
          if (skippedTopics.has(target)) {
            skippedGroupOffsets.push(`${group.groupId}: ${target}[${entry.partition}]`);
            continue;
          }
          const translation = translations.get(keyOf(entry.topic, entry.partition));
          if (!translation) continue;
          const committed = BigInt(entry.offset);
          const start = BigInt(
            cluster.topics
              .find((topic) => topic.name === entry.topic)
              ?.cut.find((cut) => cut.partition === entry.partition)?.startOffset ?? '0',
          );
          let to = translation.translate(committed);
          if (committed < start) {
            // The offset points into records an earlier backup of the chain holds.
            const earlier = translateThroughRuns(
              this.#restoredRuns.get(keyOf(target, entry.partition)) ?? [],
              committed,
            );
            if (earlier !== undefined) to = earlier;
            else if (cluster.incremental)
              approximated.push(`${group.groupId}: ${target}[${entry.partition}] ${committed}→${to}`);
          }
          if (!byTopic.has(target)) byTopic.set(target, []);
          byTopic.get(target)!.push({ partition: entry.partition, offset: to });
          ((committedGroups[group.groupId] ??= {})[target] ??= {})[entry.partition] = {
            from: entry.offset,
            to: to.toString(),
          };
        }
        if (byTopic.size === 0) continue;
        throwIfAborted(signal);
        await admin.alterConsumerGroupOffsets({
          groupId: group.groupId,
          topics: [...byTopic].map(([name, partitionOffsets]) => ({ name, partitionOffsets })),
        });
      }
      return {
        entries: entryCount,
        bytes,
        skipped: skippedTopics.size + skippedGroups.size,
        details: {
          conflict: context.conflict,
          topicsCreated: created,
          recordsRestored: restored,
          ...(skippedTopics.size > 0 ? { topicsSkipped: [...skippedTopics] } : {}),
          ...(skippedGroups.size > 0 ? { groupsSkipped: [...skippedGroups] } : {}),
          ...(skippedGroupOffsets.length > 0 ? { groupOffsetsSkipped: skippedGroupOffsets } : {}),
          ...(approximated.length > 0 ? { groupOffsetsBeforeThisLink: approximated } : {}),
          groupOffsets: committedGroups,
          offsetMap,
        },
      };
    } catch (error) {
      if (
        error instanceof ConflictError ||
        error instanceof ComponentError ||
        (error as Error).name === 'AbortedError'
      )
        throw error;
      throw this.#fail('restoring', error);
    } finally {
      await producer.close(true).catch(() => {});
      await admin.close().catch(() => {});
      await iterator.return?.();
    }
  }
}

function jsonlessEntry(path: string, bytes: Buffer): Entry {
  return {
    path,
    type: 'file',
    size: bytes.length,
    mode: 0o600,
    body: (async function* () {
      yield bytes;
    })(),
  };
}

function jsonEntry(path: string, value: unknown): Entry {
  return jsonlessEntry(path, Buffer.from(`${JSON.stringify(value, null, 2)}\n`));
}

/**
 * Where the next incremental after `parent` starts: each partition's end offset that `parent`
 * recorded for the kafka component `component` (default `kafka`). Pass it as
 * `incremental: { from }` and `parent.name` as the core `backup({ parent })`.
 *
 * @example
 * const parent = await inspect({ storage, name: 'latest' });
 * await backup({
 *   storage,
 *   parent: parent.name,
 *   components: [kafka({ brokers, incremental: { from: incrementalFrom(parent) } })],
 * });
 *
 * @throws {ConfigError} when the parent has no such kafka component or recorded no cut.
 */
export function incrementalFrom(
  parent: Manifest,
  component = 'kafka',
): Record<string, Record<string, string>> {
  const recorded = parent.components.find((item) => item.name === component);
  if (recorded?.kind !== 'kafka')
    throw new ConfigError(`Backup "${parent.name}" has no kafka component "${component}" to continue from.`);
  return cutOf(recorded.info, `Backup "${parent.name}"`, component);
}

/** Each partition's end offset a kafka component's recorded info holds: topic → partition → offset. */
function cutOf(
  info: ComponentInfo | undefined,
  backup: string,
  component: string,
): Record<string, Record<string, string>> {
  const topics = info?.details?.topics;
  if (
    !Array.isArray(topics) ||
    !topics.every(
      (topic) =>
        isRecord(topic) &&
        typeof topic.name === 'string' &&
        Array.isArray(topic.cut) &&
        topic.cut.every(
          (cut) =>
            isRecord(cut) &&
            Number.isInteger(cut.partition) &&
            typeof cut.endOffset === 'string' &&
            /^\d+$/.test(cut.endOffset),
        ),
    )
  )
    throw new ConfigError(
      `${backup} recorded no per-partition cut for kafka component "${component}"; take a full backup (without --incremental) to start a chain.`,
    );
  const from: Record<string, Record<string, string>> = {};
  for (const topic of topics as TopicRecord[]) {
    from[topic.name] = Object.fromEntries(topic.cut.map((cut) => [String(cut.partition), cut.endOffset]));
  }
  return from;
}

/** Same as `new KafkaComponent(options)`. */
export function kafka(options: KafkaOptions): KafkaComponent {
  return new KafkaComponent(options);
}

/**
 * Builds the component from the CLI's JSON config
 * (`{ "kind": "kafka", "brokers": ["127.0.0.1:9092"], "topics": ["orders"] }`).
 *
 * @throws {ConfigError} naming an unknown or invalid field.
 */
export function fromConfig(config: Record<string, unknown>): KafkaComponent {
  checkComponentConfig(config, 'kafka', CONFIG_FIELDS);
  const { kind: _kind, ...options } = config;
  return new KafkaComponent(options as unknown as KafkaOptions);
}
