import { randomUUID } from 'node:crypto';
import { createServer, type Socket } from 'node:net';
import { crc32c, WireReader, WireWriter } from './kafka-wire.ts';
import { listenOnFreePort } from './process.ts';

/**
 * A Kafka broker for tests, written from the protocol guide (kafka.apache.org/protocol) and the
 * message-format page (record batches v2, CRC-32C), in process, on 127.0.0.1 at a free port below
 * 32768. It speaks the wire protocol to any client (librdkafka's `kcat`, `@platformatic/kafka`)
 * for these APIs and versions, advertised through ApiVersions:
 *
 * | API | versions | | API | versions |
 * |---|---|---|---|---|
 * | Produce (0) | 3–8 | | Heartbeat (12) | 0–3 |
 * | Fetch (1) | 4–11 | | LeaveGroup (13) | 0–2 |
 * | ListOffsets (2) | 1–5 | | SyncGroup (14) | 0–3 |
 * | Metadata (3) | 1–8 | | DescribeGroups (15) | 0–4 |
 * | OffsetCommit (8) | 2–7 | | ListGroups (16) | 0–2 |
 * | OffsetFetch (9) | 1–5 | | ApiVersions (18) | 0–3 |
 * | FindCoordinator (10) | 0–2 | | CreateTopics (19) | 0–4 |
 * | JoinGroup (11) | 0–5 | | DeleteTopics (20) | 0–3 |
 * | DeleteRecords (21) | 0–1 | | InitProducerId (22) | 0–1 |
 * | DescribeConfigs (32) | 0–3 | | DeleteGroups (42) | 0–1 |
 *
 * Like one real broker: requests on a connection are answered in order; produced batches are
 * checked (magic 2, length, CRC-32C) and stored as sent with their base offset assigned, so a
 * fetch returns the producer's bytes (compressed batches stay compressed); `acks=0` gets no
 * answer; an idempotent producer's retried batch is acknowledged with its first offset and not
 * appended twice, a gap in its sequence is refused; a fetch waits up to `max_wait_ms` for
 * `min_bytes`; topics with `message.timestamp.type=LogAppendTime` get the broker's time;
 * DeleteRecords moves the log start offset as retention would; consumer groups run the classic
 * protocol (member id required from JoinGroup v4, rebalances, generations, session timeouts),
 * and committed offsets are kept per group. With `nodes > 1` the metadata shows that many brokers
 * (all served by this one listener) so replication factors above one can be created.
 *
 * Not modelled: transactions (a transactional produce is refused), fetch sessions (every fetch is
 * a full one, session id 0), SASL/TLS, quotas, ACLs, compaction, segment files. State is in memory.
 */
export interface KafkaDouble {
  /** `127.0.0.1:PORT`, for `bootstrap.servers` / `kcat -b`. */
  bootstrap: string;
  host: string;
  port: number;
  /** The cluster id Metadata reports. */
  clusterId: string;
  /** A partition's log as the broker holds it, or `undefined` when the topic or partition does not exist. */
  log(
    topic: string,
    partition: number,
  ): { logStartOffset: bigint; highWatermark: bigint; batches: number } | undefined;
  /** Topic names, sorted. */
  topics(): string[];
  /**
   * Fault injection: the next `count` Produce requests are appended to the log, then the
   * connection is closed before the answer is sent (the producer sees a network error and retries).
   */
  dropProduceResponses(count: number): void;
  /** Requests served, as `ApiName vN`, in order. */
  requests: string[];
  stop: () => Promise<void>;
}

export interface KafkaDoubleOptions {
  /** Brokers the metadata shows (all served here); default 1. */
  nodes?: number;
  /** `auto.create.topics.enable`: Metadata and Produce create a missing topic; default true, as Kafka's. */
  autoCreateTopics?: boolean;
  /** `num.partitions` for auto-created topics and CreateTopics with -1; default 1. */
  defaultPartitions?: number;
}

const API = {
  Produce: 0,
  Fetch: 1,
  ListOffsets: 2,
  Metadata: 3,
  OffsetCommit: 8,
  OffsetFetch: 9,
  FindCoordinator: 10,
  JoinGroup: 11,
  Heartbeat: 12,
  LeaveGroup: 13,
  SyncGroup: 14,
  DescribeGroups: 15,
  ListGroups: 16,
  ApiVersions: 18,
  CreateTopics: 19,
  DeleteTopics: 20,
  DeleteRecords: 21,
  InitProducerId: 22,
  DescribeConfigs: 32,
  DeleteGroups: 42,
} as const;

const VERSIONS: Record<number, [number, number]> = {
  [API.Produce]: [3, 8],
  [API.Fetch]: [4, 11],
  [API.ListOffsets]: [1, 5],
  [API.Metadata]: [1, 8],
  [API.OffsetCommit]: [2, 7],
  [API.OffsetFetch]: [1, 5],
  [API.FindCoordinator]: [0, 2],
  [API.JoinGroup]: [0, 5],
  [API.Heartbeat]: [0, 3],
  [API.LeaveGroup]: [0, 2],
  [API.SyncGroup]: [0, 3],
  [API.DescribeGroups]: [0, 4],
  [API.ListGroups]: [0, 2],
  [API.ApiVersions]: [0, 3],
  [API.CreateTopics]: [0, 4],
  [API.DeleteTopics]: [0, 3],
  [API.DeleteRecords]: [0, 1],
  [API.InitProducerId]: [0, 1],
  [API.DescribeConfigs]: [0, 3],
  [API.DeleteGroups]: [0, 1],
};

const API_NAMES = Object.fromEntries(Object.entries(API).map(([name, key]) => [key, name]));

const ERROR = {
  NONE: 0,
  OFFSET_OUT_OF_RANGE: 1,
  CORRUPT_MESSAGE: 2,
  UNKNOWN_TOPIC_OR_PARTITION: 3,
  INVALID_TOPIC_EXCEPTION: 17,
  ILLEGAL_GENERATION: 22,
  INCONSISTENT_GROUP_PROTOCOL: 23,
  INVALID_GROUP_ID: 24,
  UNKNOWN_MEMBER_ID: 25,
  REBALANCE_IN_PROGRESS: 27,
  UNSUPPORTED_VERSION: 35,
  TOPIC_ALREADY_EXISTS: 36,
  INVALID_PARTITIONS: 37,
  INVALID_REPLICATION_FACTOR: 38,
  INVALID_REQUEST: 42,
  UNSUPPORTED_FOR_MESSAGE_FORMAT: 43,
  OUT_OF_ORDER_SEQUENCE_NUMBER: 45,
  INVALID_PRODUCER_EPOCH: 47,
  TRANSACTIONAL_ID_AUTHORIZATION_FAILED: 53,
  MEMBER_ID_REQUIRED: 79,
} as const;

/** Topic configs with their defaults, as a broker with stock settings describes them. */
const TOPIC_CONFIG_DEFAULTS: Record<string, string> = {
  'cleanup.policy': 'delete',
  'compression.type': 'producer',
  'delete.retention.ms': '86400000',
  'file.delete.delay.ms': '60000',
  'flush.messages': '9223372036854775807',
  'flush.ms': '9223372036854775807',
  'index.interval.bytes': '4096',
  'max.compaction.lag.ms': '9223372036854775807',
  'max.message.bytes': '1048588',
  'message.timestamp.difference.max.ms': '9223372036854775807',
  'message.timestamp.type': 'CreateTime',
  'min.cleanable.dirty.ratio': '0.5',
  'min.compaction.lag.ms': '0',
  'min.insync.replicas': '1',
  preallocate: 'false',
  'retention.bytes': '-1',
  'retention.ms': '604800000',
  'segment.bytes': '1073741824',
  'segment.index.bytes': '10485760',
  'segment.jitter.ms': '0',
  'segment.ms': '604800000',
  'unclean.leader.election.enable': 'false',
};
const CONFIG_SOURCE_TOPIC = 1;
const CONFIG_SOURCE_DEFAULT = 5;
const RESOURCE_TOPIC = 2;
const RESOURCE_BROKER = 4;

interface Batch {
  baseOffset: bigint;
  lastOffset: bigint;
  maxTimestamp: bigint;
  bytes: Buffer;
}

interface ProducerState {
  epoch: number;
  lastSequence: number;
  /** The last batches appended, for acknowledging a retry with its first offset. */
  recent: { baseSequence: number; lastSequence: number; baseOffset: bigint }[];
}

interface Partition {
  batches: Batch[];
  logStartOffset: bigint;
  highWatermark: bigint;
  leader: number;
  replicas: number[];
  producers: Map<bigint, ProducerState>;
}

interface Topic {
  name: string;
  id: string;
  partitions: Partition[];
  configs: Map<string, string>;
}

interface Member {
  id: string;
  groupInstanceId: string | null;
  clientId: string;
  clientHost: string;
  sessionTimeoutMs: number;
  rebalanceTimeoutMs: number;
  protocolType: string;
  protocols: { name: string; metadata: Buffer }[];
  assignment: Buffer;
  lastSeen: number;
}

type GroupState = 'Empty' | 'PreparingRebalance' | 'CompletingRebalance' | 'Stable';

interface JoinResult {
  error: number;
  generation: number;
  protocolName: string;
  leader: string;
  memberId: string;
  members: Member[];
}

interface Group {
  id: string;
  state: GroupState;
  protocolType: string;
  protocolName: string;
  generation: number;
  leader: string;
  members: Map<string, Member>;
  /** Member ids handed out with MEMBER_ID_REQUIRED, not yet joined. */
  pendingIds: Set<string>;
  joins: Map<string, (result: JoinResult) => void>;
  syncs: Map<string, (result: { error: number; assignment: Buffer }) => void>;
  rebalanceTimer?: NodeJS.Timeout;
  offsets: Map<
    string,
    { topic: string; partition: number; offset: bigint; leaderEpoch: number; metadata: string | null }
  >;
}

interface RequestHeader {
  apiKey: number;
  apiVersion: number;
  correlationId: number;
  clientId: string;
}

const TOPIC_NAME = /^[a-zA-Z0-9._-]{1,249}$/;
const EMPTY = Buffer.alloc(0);

class KafkaBroker {
  readonly topics = new Map<string, Topic>();
  readonly groups = new Map<string, Group>();
  readonly requests: string[] = [];
  readonly clusterId = randomUUID().replaceAll('-', '').slice(0, 22);
  readonly nodes: number;
  readonly autoCreate: boolean;
  readonly defaultPartitions: number;
  port = 0;
  dropProduce = 0;
  #nextProducerId = 1000n;
  #produced = new Set<() => void>();

  constructor(options: KafkaDoubleOptions) {
    this.nodes = options.nodes ?? 1;
    this.autoCreate = options.autoCreateTopics ?? true;
    this.defaultPartitions = options.defaultPartitions ?? 1;
  }

  nextProducerId(): bigint {
    this.#nextProducerId += 1n;
    return this.#nextProducerId;
  }

  createTopic(
    name: string,
    partitions: number,
    replicationFactor: number,
    configs: Map<string, string>,
  ): { error: number; message: string | null } {
    if (!TOPIC_NAME.test(name) || name === '.' || name === '..')
      return { error: ERROR.INVALID_TOPIC_EXCEPTION, message: `Topic name "${name}" is illegal.` };
    if (this.topics.has(name))
      return { error: ERROR.TOPIC_ALREADY_EXISTS, message: `Topic '${name}' already exists.` };
    const count = partitions === -1 ? this.defaultPartitions : partitions;
    if (count < 1)
      return { error: ERROR.INVALID_PARTITIONS, message: 'Number of partitions must be larger than 0.' };
    const factor = replicationFactor === -1 ? 1 : replicationFactor;
    if (factor < 1 || factor > this.nodes)
      return {
        error: ERROR.INVALID_REPLICATION_FACTOR,
        message: `Replication factor: ${factor} larger than available brokers: ${this.nodes}.`,
      };
    for (const key of configs.keys()) {
      if (!(key in TOPIC_CONFIG_DEFAULTS)) return { error: 40, message: `Unknown topic config name: ${key}` };
    }
    this.topics.set(name, {
      name,
      id: randomUUID(),
      configs,
      partitions: Array.from({ length: count }, (_, index) => {
        const leader = (index % this.nodes) + 1;
        return {
          batches: [],
          logStartOffset: 0n,
          highWatermark: 0n,
          leader,
          replicas: Array.from({ length: factor }, (_, replica) => ((leader - 1 + replica) % this.nodes) + 1),
          producers: new Map(),
        };
      }),
    });
    return { error: ERROR.NONE, message: null };
  }

  partitionOf(topic: string, partition: number): Partition | undefined {
    return this.topics.get(topic)?.partitions[partition];
  }

  /** Resolves on the next append, or after `ms`. */
  waitForProduce(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#produced.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#produced.add(done);
    });
  }

  /** Appends the batches of one Produce partition; returns the error and the first offset. */
  append(
    topic: Topic,
    partition: Partition,
    records: Buffer | null,
  ): { error: number; baseOffset: bigint; logAppendTime: bigint; message: string | null } {
    const fail = (error: number, message: string) => ({
      error,
      baseOffset: -1n,
      logAppendTime: -1n,
      message,
    });
    if (!records || records.length === 0) return fail(ERROR.CORRUPT_MESSAGE, 'empty record set');
    const parsed: { bytes: Buffer; count: bigint; producerId: bigint; epoch: number; sequence: number }[] =
      [];
    for (let position = 0; position < records.length; ) {
      if (records.length - position < 61) return fail(ERROR.CORRUPT_MESSAGE, 'truncated record batch');
      const length = records.readInt32BE(position + 8);
      const end = position + 12 + length;
      if (length < 49 || end > records.length)
        return fail(ERROR.CORRUPT_MESSAGE, 'record batch length out of range');
      const magic = records.readInt8(position + 16);
      if (magic !== 2)
        return fail(ERROR.UNSUPPORTED_FOR_MESSAGE_FORMAT, `record batch magic ${magic}: only v2 is accepted`);
      const crc = records.readUInt32BE(position + 17);
      if (crc32c(records.subarray(position + 21, end)) !== crc)
        return fail(ERROR.CORRUPT_MESSAGE, 'record batch CRC-32C mismatch');
      const attributes = records.readInt16BE(position + 21);
      if (attributes & 0x10)
        return fail(ERROR.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, 'transactions are not supported');
      parsed.push({
        bytes: Buffer.from(records.subarray(position, end)),
        count: BigInt(records.readInt32BE(position + 23)) + 1n,
        producerId: records.readBigInt64BE(position + 43),
        epoch: records.readInt16BE(position + 51),
        sequence: records.readInt32BE(position + 53),
      });
      position = end;
    }
    const logAppend = topic.configs.get('message.timestamp.type') === 'LogAppendTime';
    const now = BigInt(Date.now());
    let first: bigint | undefined;
    for (const batch of parsed) {
      if (batch.producerId >= 0n) {
        const state = partition.producers.get(batch.producerId);
        const lastSequence = batch.sequence + Number(batch.count) - 1;
        if (state && batch.epoch === state.epoch) {
          const duplicate = state.recent.find((recent) => recent.baseSequence === batch.sequence);
          if (duplicate) {
            first ??= duplicate.baseOffset;
            continue;
          }
          if (batch.sequence !== state.lastSequence + 1)
            return fail(
              ERROR.OUT_OF_ORDER_SEQUENCE_NUMBER,
              `sequence ${batch.sequence} of producer ${batch.producerId} after ${state.lastSequence}`,
            );
        } else if (state && batch.epoch < state.epoch) {
          return fail(ERROR.INVALID_PRODUCER_EPOCH, 'producer epoch is fenced');
        } else if (batch.sequence !== 0 && !state) {
          return fail(
            ERROR.OUT_OF_ORDER_SEQUENCE_NUMBER,
            `first sequence of producer ${batch.producerId} is ${batch.sequence}`,
          );
        }
        const next =
          state && batch.epoch === state.epoch ? state : { epoch: batch.epoch, lastSequence: -1, recent: [] };
        next.lastSequence = lastSequence;
        next.recent.push({ baseSequence: batch.sequence, lastSequence, baseOffset: partition.highWatermark });
        if (next.recent.length > 5) next.recent.shift();
        partition.producers.set(batch.producerId, next);
      }
      const bytes = batch.bytes;
      bytes.writeBigInt64BE(partition.highWatermark, 0);
      bytes.writeInt32BE(0, 12);
      if (logAppend) {
        bytes.writeInt16BE(bytes.readInt16BE(21) | 0x08, 21);
        bytes.writeBigInt64BE(now, 35);
        bytes.writeUInt32BE(crc32c(bytes.subarray(21)), 17);
      }
      first ??= partition.highWatermark;
      partition.batches.push({
        baseOffset: partition.highWatermark,
        lastOffset: partition.highWatermark + batch.count - 1n,
        maxTimestamp: bytes.readBigInt64BE(35),
        bytes,
      });
      partition.highWatermark += batch.count;
    }
    for (const wake of [...this.#produced]) wake();
    return {
      error: ERROR.NONE,
      baseOffset: first ?? -1n,
      logAppendTime: logAppend ? now : -1n,
      message: null,
    };
  }

  /** The first offset whose record's timestamp is at or after `timestamp`, and that timestamp. */
  offsetForTime(partition: Partition, timestamp: bigint): { offset: bigint; timestamp: bigint } {
    for (const batch of partition.batches) {
      if (batch.maxTimestamp < timestamp || batch.lastOffset < partition.logStartOffset) continue;
      const attributes = batch.bytes.readInt16BE(21);
      if ((attributes & 0x07) !== 0 || (attributes & 0x08) !== 0)
        return { offset: batch.baseOffset, timestamp: batch.maxTimestamp };
      const reader = new WireReader(batch.bytes);
      reader.offset = 27;
      const base = reader.int64();
      reader.offset = 57;
      const count = reader.int32();
      for (let index = 0; index < count; index += 1) {
        const length = reader.varint();
        const start = reader.offset;
        reader.int8();
        const time = base + reader.varlong();
        const offset = batch.baseOffset + BigInt(reader.varint());
        if (time >= timestamp && offset >= partition.logStartOffset) return { offset, timestamp: time };
        reader.offset = start + length;
      }
    }
    return { offset: -1n, timestamp: -1n };
  }

  group(id: string): Group {
    let group = this.groups.get(id);
    if (!group) {
      group = {
        id,
        state: 'Empty',
        protocolType: '',
        protocolName: '',
        generation: 0,
        leader: '',
        members: new Map(),
        pendingIds: new Set(),
        joins: new Map(),
        syncs: new Map(),
        offsets: new Map(),
      };
      this.groups.set(id, group);
    }
    return group;
  }

  /** Starts (or keeps going) a rebalance: members learn of it from Heartbeat and rejoin. */
  prepareRebalance(group: Group): void {
    for (const [, respond] of group.syncs) respond({ error: ERROR.REBALANCE_IN_PROGRESS, assignment: EMPTY });
    group.syncs.clear();
    if (group.members.size === 0) {
      clearTimeout(group.rebalanceTimer);
      group.rebalanceTimer = undefined;
      group.state = 'Empty';
      group.leader = '';
      group.protocolName = '';
      group.generation += 1;
      return;
    }
    if (group.state !== 'PreparingRebalance') {
      group.state = 'PreparingRebalance';
      const timeout = Math.max(...[...group.members.values()].map((member) => member.rebalanceTimeoutMs));
      group.rebalanceTimer = setTimeout(() => this.completeJoin(group, true), timeout);
      group.rebalanceTimer.unref();
    }
    this.maybeCompleteJoin(group);
  }

  maybeCompleteJoin(group: Group): void {
    if (group.state !== 'PreparingRebalance') return;
    if ([...group.members.keys()].every((id) => group.joins.has(id))) {
      // Like group.initial.rebalance.delay.ms, a short pause lets members that are starting together join one generation.
      setTimeout(() => this.completeJoin(group, false), group.generation === 0 ? 100 : 0).unref();
    }
  }

  completeJoin(group: Group, timedOut: boolean): void {
    if (group.state !== 'PreparingRebalance') return;
    if (!timedOut && ![...group.members.keys()].every((id) => group.joins.has(id))) return;
    clearTimeout(group.rebalanceTimer);
    group.rebalanceTimer = undefined;
    for (const id of [...group.members.keys()]) if (!group.joins.has(id)) group.members.delete(id);
    if (group.members.size === 0) {
      this.prepareRebalance(group);
      return;
    }
    const members = [...group.members.values()];
    const candidates = members[0]!.protocols.map((protocol) => protocol.name);
    const protocolName =
      candidates.find((name) =>
        members.every((member) => member.protocols.some((protocol) => protocol.name === name)),
      ) ?? candidates[0]!;
    group.generation += 1;
    group.protocolName = protocolName;
    group.protocolType = members[0]!.protocolType;
    if (!group.members.has(group.leader)) group.leader = members[0]!.id;
    group.state = 'CompletingRebalance';
    const now = Date.now();
    for (const member of members) member.lastSeen = now;
    const joins = [...group.joins];
    group.joins.clear();
    for (const [id, respond] of joins) {
      respond({
        error: ERROR.NONE,
        generation: group.generation,
        protocolName,
        leader: group.leader,
        memberId: id,
        members: id === group.leader ? members : [],
      });
    }
  }

  /** Removes members whose session timed out, as the coordinator does. */
  expireSessions(): void {
    const now = Date.now();
    for (const group of this.groups.values()) {
      if (group.state === 'PreparingRebalance' || group.state === 'Empty') continue;
      let expired = false;
      for (const member of [...group.members.values()]) {
        if (now - member.lastSeen > member.sessionTimeoutMs) {
          group.members.delete(member.id);
          expired = true;
        }
      }
      if (expired) this.prepareRebalance(group);
    }
  }
}

function write(header: RequestHeader, body: WireWriter, flexibleHeader: boolean): Buffer {
  const payload = body.toBuffer();
  const head = Buffer.alloc(flexibleHeader ? 9 : 8);
  head.writeInt32BE(payload.length + head.length - 4, 0);
  head.writeInt32BE(header.correlationId, 4);
  return Buffer.concat([head, payload]);
}

/** Starts the in-process Kafka broker double (see {@link KafkaDouble}). */
export async function startKafkaDouble(options: KafkaDoubleOptions = {}): Promise<KafkaDouble> {
  const broker = new KafkaBroker(options);
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.setNoDelay(true);
    let pending = Buffer.alloc(0);
    let queue = Promise.resolve();
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.on('data', (data) => {
      pending = pending.length === 0 ? data : Buffer.concat([pending, data]);
      while (pending.length >= 4) {
        const size = pending.readInt32BE(0);
        if (size < 8 || size > 100 * 1024 * 1024) {
          socket.destroy();
          return;
        }
        if (pending.length < 4 + size) break;
        const frame = pending.subarray(4, 4 + size);
        pending = pending.subarray(4 + size);
        // One request at a time per connection, answered in order, as a broker mutes a channel.
        queue = queue.then(async () => {
          if (socket.destroyed) return;
          try {
            const response = await handle(broker, frame, socket);
            if (response && !socket.destroyed) socket.write(response);
          } catch {
            socket.destroy();
          }
        });
      }
    });
  });
  const port = await listenOnFreePort(server);
  broker.port = port;
  const sessions = setInterval(() => broker.expireSessions(), 250);
  sessions.unref();
  return {
    bootstrap: `127.0.0.1:${port}`,
    host: '127.0.0.1',
    port,
    clusterId: broker.clusterId,
    requests: broker.requests,
    log(topic, partition) {
      const found = broker.partitionOf(topic, partition);
      return found
        ? {
            logStartOffset: found.logStartOffset,
            highWatermark: found.highWatermark,
            batches: found.batches.length,
          }
        : undefined;
    },
    topics: () => [...broker.topics.keys()].sort(),
    dropProduceResponses(count) {
      broker.dropProduce = count;
    },
    async stop() {
      clearInterval(sessions);
      for (const group of broker.groups.values()) clearTimeout(group.rebalanceTimer);
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function handle(broker: KafkaBroker, frame: Buffer, socket: Socket): Promise<Buffer | undefined> {
  const reader = new WireReader(frame);
  const apiKey = reader.int16();
  const apiVersion = reader.int16();
  const correlationId = reader.int32();
  const clientId = reader.nullableString() ?? '';
  const header: RequestHeader = { apiKey, apiVersion, correlationId, clientId };
  const range = VERSIONS[apiKey];
  broker.requests.push(`${API_NAMES[apiKey] ?? `ApiKey${apiKey}`} v${apiVersion}`);
  if (apiKey === API.ApiVersions) {
    const body = new WireWriter();
    if (apiVersion > 3) {
      // A version the broker does not know: answered in v0, which every client can read, with the supported range.
      body.int16(ERROR.UNSUPPORTED_VERSION);
      body.array(Object.entries(VERSIONS), (w, [key, [min, max]]) =>
        w.int16(Number(key)).int16(min).int16(max),
      );
      return write(header, body, false);
    }
    if (apiVersion >= 3) reader.taggedFields();
    body.int16(ERROR.NONE);
    const entries = Object.entries(VERSIONS);
    if (apiVersion >= 3) {
      body.compactArray(entries, (w, [key, [min, max]]) =>
        w.int16(Number(key)).int16(min).int16(max).taggedFields(),
      );
      body.int32(0).taggedFields();
    } else {
      body.array(entries, (w, [key, [min, max]]) => w.int16(Number(key)).int16(min).int16(max));
      if (apiVersion >= 1) body.int32(0);
    }
    // ApiVersions answers with response header v0 at every version.
    return write(header, body, false);
  }
  if (!range || apiVersion < range[0] || apiVersion > range[1]) {
    // A real broker closes the connection on a request it cannot parse.
    socket.destroy();
    return undefined;
  }
  const body = new WireWriter();
  const v = apiVersion;
  switch (apiKey) {
    case API.Metadata:
      metadata(broker, reader, body, v, clientId);
      break;
    case API.CreateTopics:
      createTopics(broker, reader, body, v);
      break;
    case API.DeleteTopics: {
      const names = reader.array((r) => r.string()) ?? [];
      reader.int32();
      if (v >= 1) body.int32(0);
      body.array(names, (w, name) => {
        const known = broker.topics.delete(name);
        w.string(name).int16(known ? ERROR.NONE : ERROR.UNKNOWN_TOPIC_OR_PARTITION);
      });
      break;
    }
    case API.DescribeConfigs:
      describeConfigs(broker, reader, body, v);
      break;
    case API.Produce: {
      const result = produce(broker, reader, body, v);
      if (result === 'no-response') return undefined;
      if (broker.dropProduce > 0) {
        broker.dropProduce -= 1;
        socket.destroy();
        return undefined;
      }
      break;
    }
    case API.InitProducerId: {
      const transactionalId = reader.nullableString();
      reader.int32();
      body.int32(0);
      if (transactionalId !== null)
        body.int16(ERROR.TRANSACTIONAL_ID_AUTHORIZATION_FAILED).int64(-1n).int16(-1);
      else body.int16(ERROR.NONE).int64(broker.nextProducerId()).int16(0);
      break;
    }
    case API.Fetch:
      await fetchRecords(broker, reader, body, v);
      break;
    case API.ListOffsets:
      listOffsets(broker, reader, body, v);
      break;
    case API.DeleteRecords: {
      const topics =
        reader.array((r) => ({
          name: r.string(),
          partitions: r.array((p) => ({ index: p.int32(), offset: p.int64() })) ?? [],
        })) ?? [];
      reader.int32();
      body.int32(0);
      body.array(topics, (w, topic) => {
        w.string(topic.name).array(topic.partitions, (pw, wanted) => {
          const partition = broker.partitionOf(topic.name, wanted.index);
          if (!partition) {
            pw.int32(wanted.index).int64(-1n).int16(ERROR.UNKNOWN_TOPIC_OR_PARTITION);
            return;
          }
          const target = wanted.offset === -1n ? partition.highWatermark : wanted.offset;
          if (target < 0n || target > partition.highWatermark) {
            pw.int32(wanted.index).int64(-1n).int16(ERROR.OFFSET_OUT_OF_RANGE);
            return;
          }
          if (target > partition.logStartOffset) {
            partition.logStartOffset = target;
            partition.batches = partition.batches.filter((batch) => batch.lastOffset >= target);
          }
          pw.int32(wanted.index).int64(partition.logStartOffset).int16(ERROR.NONE);
        });
      });
      break;
    }
    case API.FindCoordinator: {
      reader.string();
      if (v >= 1) reader.int8();
      if (v >= 1) body.int32(0);
      body.int16(ERROR.NONE);
      if (v >= 1) body.nullableString(null);
      body.int32(1).string('127.0.0.1').int32(broker.port);
      break;
    }
    case API.JoinGroup:
      await joinGroup(broker, reader, body, v, clientId, socket.remoteAddress ?? '');
      break;
    case API.SyncGroup:
      await syncGroup(broker, reader, body, v);
      break;
    case API.Heartbeat: {
      const group = broker.groups.get(reader.string());
      const generation = reader.int32();
      const memberId = reader.string();
      if (v >= 1) body.int32(0);
      const member = group?.members.get(memberId);
      if (!group || !member) body.int16(ERROR.UNKNOWN_MEMBER_ID);
      else {
        member.lastSeen = Date.now();
        if (group.state === 'PreparingRebalance') body.int16(ERROR.REBALANCE_IN_PROGRESS);
        else if (generation !== group.generation) body.int16(ERROR.ILLEGAL_GENERATION);
        else body.int16(ERROR.NONE);
      }
      break;
    }
    case API.LeaveGroup: {
      const group = broker.groups.get(reader.string());
      const memberId = reader.string();
      if (v >= 1) body.int32(0);
      if (!group?.members.has(memberId)) body.int16(ERROR.UNKNOWN_MEMBER_ID);
      else {
        group.members.delete(memberId);
        group.joins.get(memberId)?.({
          error: ERROR.UNKNOWN_MEMBER_ID,
          generation: -1,
          protocolName: '',
          leader: '',
          memberId,
          members: [],
        });
        group.joins.delete(memberId);
        broker.prepareRebalance(group);
        body.int16(ERROR.NONE);
      }
      break;
    }
    case API.OffsetCommit:
      offsetCommit(broker, reader, body, v);
      break;
    case API.OffsetFetch:
      offsetFetch(broker, reader, body, v);
      break;
    case API.ListGroups: {
      if (v >= 1) body.int32(0);
      body.int16(ERROR.NONE);
      body.array([...broker.groups.values()], (w, group) => w.string(group.id).string(group.protocolType));
      break;
    }
    case API.DescribeGroups: {
      const ids = reader.array((r) => r.string()) ?? [];
      if (v >= 1) body.int32(0);
      body.array(ids, (w, id) => {
        const group = broker.groups.get(id);
        w.int16(ERROR.NONE)
          .string(id)
          .string(group?.state ?? 'Dead');
        w.string(group?.protocolType ?? '').string(
          group?.state === 'Stable' || group?.state === 'CompletingRebalance' ? group.protocolName : '',
        );
        w.array(group ? [...group.members.values()] : [], (mw, member) => {
          mw.string(member.id);
          if (v >= 4) mw.nullableString(member.groupInstanceId);
          mw.string(member.clientId).string(member.clientHost);
          mw.nullableBytes(
            member.protocols.find((protocol) => protocol.name === group?.protocolName)?.metadata ?? EMPTY,
          );
          mw.nullableBytes(member.assignment);
        });
        if (v >= 3) w.int32(-2147483648);
      });
      break;
    }
    case API.DeleteGroups: {
      const ids = reader.array((r) => r.string()) ?? [];
      body.int32(0);
      body.array(ids, (w, id) => {
        const group = broker.groups.get(id);
        // GROUP_ID_NOT_FOUND (69), NON_EMPTY_GROUP (68).
        const error = !group ? 69 : group.members.size > 0 ? 68 : ERROR.NONE;
        if (error === ERROR.NONE) broker.groups.delete(id);
        w.string(id).int16(error);
      });
      break;
    }
    default:
      socket.destroy();
      return undefined;
  }
  return write(header, body, false);
}

function brokersOf(broker: KafkaBroker): number[] {
  return Array.from({ length: broker.nodes }, (_, index) => index + 1);
}

function metadata(
  broker: KafkaBroker,
  reader: WireReader,
  body: WireWriter,
  v: number,
  _clientId: string,
): void {
  const requested = reader.array((r) => r.string());
  const allowAutoCreate = v >= 4 ? reader.boolean() : true;
  if (v >= 3) body.int32(0);
  body.array(brokersOf(broker), (w, node) => {
    w.int32(node).string('127.0.0.1').int32(broker.port);
    w.nullableString(null);
  });
  if (v >= 2) body.nullableString(broker.clusterId);
  body.int32(1);
  const names = requested === null ? [...broker.topics.keys()].sort() : requested;
  body.array(names, (w, name) => {
    let topic = broker.topics.get(name);
    if (!topic && requested !== null && broker.autoCreate && allowAutoCreate) {
      broker.createTopic(name, -1, -1, new Map());
      topic = broker.topics.get(name);
    }
    w.int16(topic ? ERROR.NONE : ERROR.UNKNOWN_TOPIC_OR_PARTITION)
      .string(name)
      .boolean(false);
    w.array(topic?.partitions ?? [], (pw, partition) => {
      pw.int16(ERROR.NONE).int32(topic!.partitions.indexOf(partition)).int32(partition.leader);
      if (v >= 7) pw.int32(0);
      pw.array(partition.replicas, (rw, node) => rw.int32(node));
      pw.array(partition.replicas, (rw, node) => rw.int32(node));
      if (v >= 5) pw.array([], () => {});
    });
    if (v >= 8) w.int32(-2147483648);
  });
  if (v >= 8) body.int32(-2147483648);
}

function createTopics(broker: KafkaBroker, reader: WireReader, body: WireWriter, v: number): void {
  const topics =
    reader.array((r) => ({
      name: r.string(),
      partitions: r.int32(),
      replicationFactor: r.int16(),
      assignments: r.array((a) => ({ index: a.int32(), brokers: a.array((b) => b.int32()) })) ?? [],
      configs: new Map(
        (r.array((c) => [c.string(), c.nullableString()] as const) ?? []).filter(
          ([, value]) => value !== null,
        ) as [string, string][],
      ),
    })) ?? [];
  reader.int32();
  const validateOnly = v >= 1 ? reader.boolean() : false;
  if (v >= 2) body.int32(0);
  body.array(topics, (w, topic) => {
    let result: { error: number; message: string | null };
    if (topic.assignments.length > 0) {
      result = {
        error: ERROR.INVALID_REQUEST,
        message: 'Manual partition assignments are not supported by this broker.',
      };
    } else if (validateOnly) {
      result = broker.topics.has(topic.name)
        ? { error: ERROR.TOPIC_ALREADY_EXISTS, message: `Topic '${topic.name}' already exists.` }
        : { error: ERROR.NONE, message: null };
    } else {
      result = broker.createTopic(topic.name, topic.partitions, topic.replicationFactor, topic.configs);
    }
    w.string(topic.name).int16(result.error);
    if (v >= 1) w.nullableString(result.message);
  });
}

function describeConfigs(broker: KafkaBroker, reader: WireReader, body: WireWriter, v: number): void {
  const resources =
    reader.array((r) => ({ type: r.int8(), name: r.string(), keys: r.array((k) => k.string()) })) ?? [];
  const synonyms = v >= 1 ? reader.boolean() : false;
  if (v >= 3) reader.boolean();
  body.int32(0);
  body.array(resources, (w, resource) => {
    const topic = resource.type === RESOURCE_TOPIC ? broker.topics.get(resource.name) : undefined;
    let error: number = ERROR.NONE;
    let message: string | null = null;
    let configs: { name: string; value: string; source: number }[] = [];
    if (resource.type === RESOURCE_TOPIC && !topic) {
      error = ERROR.UNKNOWN_TOPIC_OR_PARTITION;
      message = `Topic ${resource.name} does not exist.`;
    } else if (resource.type === RESOURCE_TOPIC || resource.type === RESOURCE_BROKER) {
      configs = Object.entries(TOPIC_CONFIG_DEFAULTS).map(([name, value]) => {
        const set = topic?.configs.get(name);
        return set === undefined
          ? { name, value, source: CONFIG_SOURCE_DEFAULT }
          : { name, value: set, source: CONFIG_SOURCE_TOPIC };
      });
      if (resource.keys) configs = configs.filter((config) => resource.keys!.includes(config.name));
    } else {
      error = ERROR.INVALID_REQUEST;
      message = `Resource type ${resource.type} is not supported.`;
    }
    w.int16(error).nullableString(message).int8(resource.type).string(resource.name);
    w.array(configs, (cw, config) => {
      cw.string(config.name).nullableString(config.value).boolean(false);
      if (v === 0) cw.boolean(config.source === CONFIG_SOURCE_DEFAULT);
      else cw.int8(config.source);
      cw.boolean(false);
      if (v >= 1) {
        cw.array(synonyms && config.source === CONFIG_SOURCE_TOPIC ? [config] : [], (sw, synonym) =>
          sw.string(synonym.name).nullableString(synonym.value).int8(synonym.source),
        );
      }
      if (v >= 3) cw.int8(0).nullableString(null);
    });
  });
}

function produce(
  broker: KafkaBroker,
  reader: WireReader,
  body: WireWriter,
  v: number,
): 'no-response' | undefined {
  const transactionalId = reader.nullableString();
  const acks = reader.int16();
  reader.int32();
  const topics =
    reader.array((r) => ({
      name: r.string(),
      partitions: r.array((p) => ({ index: p.int32(), records: p.nullableBytes() })) ?? [],
    })) ?? [];
  const results = topics.map((wanted) => {
    let topic = broker.topics.get(wanted.name);
    if (!topic && broker.autoCreate) {
      broker.createTopic(wanted.name, -1, -1, new Map());
      topic = broker.topics.get(wanted.name);
    }
    return {
      name: wanted.name,
      partitions: wanted.partitions.map((partition) => {
        const target = topic?.partitions[partition.index];
        if (!topic || !target)
          return {
            index: partition.index,
            error: ERROR.UNKNOWN_TOPIC_OR_PARTITION,
            baseOffset: -1n,
            logAppendTime: -1n,
            logStartOffset: -1n,
            message: null,
          };
        if (transactionalId !== null)
          return {
            index: partition.index,
            error: ERROR.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            baseOffset: -1n,
            logAppendTime: -1n,
            logStartOffset: -1n,
            message: 'transactions are not supported',
          };
        const appended = broker.append(topic, target, partition.records);
        return { index: partition.index, ...appended, logStartOffset: target.logStartOffset };
      }),
    };
  });
  if (acks === 0) return 'no-response';
  body.array(results, (w, topic) => {
    w.string(topic.name).array(topic.partitions, (pw, partition) => {
      pw.int32(partition.index)
        .int16(partition.error)
        .int64(partition.baseOffset)
        .int64(partition.logAppendTime);
      if (v >= 5) pw.int64(partition.logStartOffset);
      if (v >= 8) pw.array([], () => {}).nullableString(partition.message);
    });
  });
  body.int32(0);
  return undefined;
}

async function fetchRecords(
  broker: KafkaBroker,
  reader: WireReader,
  body: WireWriter,
  v: number,
): Promise<void> {
  reader.int32();
  const maxWaitMs = reader.int32();
  const minBytes = reader.int32();
  const maxBytes = reader.int32();
  reader.int8();
  if (v >= 7) {
    reader.int32();
    reader.int32();
  }
  const topics =
    reader.array((r) => ({
      name: r.string(),
      partitions:
        r.array((p) => {
          const index = p.int32();
          if (v >= 9) p.int32();
          const fetchOffset = p.int64();
          if (v >= 5) p.int64();
          return { index, fetchOffset, maxBytes: p.int32() };
        }) ?? [],
    })) ?? [];
  const collect = () => {
    let total = 0;
    const responses = topics.map((topic) => ({
      name: topic.name,
      partitions: topic.partitions.map((wanted) => {
        const partition = broker.partitionOf(topic.name, wanted.index);
        if (!partition)
          return {
            index: wanted.index,
            error: ERROR.UNKNOWN_TOPIC_OR_PARTITION,
            partition,
            records: [] as Buffer[],
          };
        if (wanted.fetchOffset < partition.logStartOffset || wanted.fetchOffset > partition.highWatermark)
          return {
            index: wanted.index,
            error: ERROR.OFFSET_OUT_OF_RANGE,
            partition,
            records: [] as Buffer[],
          };
        const records: Buffer[] = [];
        let size = 0;
        for (const batch of partition.batches) {
          if (batch.lastOffset < wanted.fetchOffset) continue;
          const length = batch.bytes.length;
          // KIP-74: the first batch is returned whole even past the limits, so a consumer always progresses.
          const fits = size + length <= wanted.maxBytes && total + length <= maxBytes;
          if (!fits && (size > 0 || total > 0)) break;
          records.push(batch.bytes);
          size += length;
          total += length;
        }
        return { index: wanted.index, error: ERROR.NONE, partition, records };
      }),
    }));
    return { total, responses };
  };
  let result = collect();
  if (result.total < minBytes && maxWaitMs > 0) {
    await broker.waitForProduce(maxWaitMs);
    result = collect();
  }
  body.int32(0);
  if (v >= 7) body.int16(ERROR.NONE).int32(0);
  body.array(result.responses, (w, topic) => {
    w.string(topic.name).array(topic.partitions, (pw, partition) => {
      const log = partition.partition;
      pw.int32(partition.index).int16(partition.error);
      pw.int64(log?.highWatermark ?? -1n).int64(log?.highWatermark ?? -1n);
      if (v >= 5) pw.int64(log?.logStartOffset ?? -1n);
      pw.array([], () => {});
      if (v >= 11) pw.int32(-1);
      pw.nullableBytes(Buffer.concat(partition.records));
    });
  });
}

function listOffsets(broker: KafkaBroker, reader: WireReader, body: WireWriter, v: number): void {
  reader.int32();
  if (v >= 2) reader.int8();
  const topics =
    reader.array((r) => ({
      name: r.string(),
      partitions:
        r.array((p) => {
          const index = p.int32();
          if (v >= 4) p.int32();
          return { index, timestamp: p.int64() };
        }) ?? [],
    })) ?? [];
  if (v >= 2) body.int32(0);
  body.array(topics, (w, topic) => {
    w.string(topic.name).array(topic.partitions, (pw, wanted) => {
      const partition = broker.partitionOf(topic.name, wanted.index);
      pw.int32(wanted.index);
      if (!partition) {
        pw.int16(ERROR.UNKNOWN_TOPIC_OR_PARTITION).int64(-1n).int64(-1n);
      } else if (wanted.timestamp === -1n) {
        pw.int16(ERROR.NONE).int64(-1n).int64(partition.highWatermark);
      } else if (wanted.timestamp === -2n) {
        pw.int16(ERROR.NONE).int64(-1n).int64(partition.logStartOffset);
      } else {
        const found = broker.offsetForTime(partition, wanted.timestamp);
        pw.int16(ERROR.NONE).int64(found.timestamp).int64(found.offset);
      }
      if (v >= 4) pw.int32(0);
    });
  });
}

async function joinGroup(
  broker: KafkaBroker,
  reader: WireReader,
  body: WireWriter,
  v: number,
  clientId: string,
  clientHost: string,
): Promise<void> {
  const groupId = reader.string();
  const sessionTimeoutMs = reader.int32();
  const rebalanceTimeoutMs = v >= 1 ? reader.int32() : sessionTimeoutMs;
  let memberId = reader.string();
  const groupInstanceId = v >= 5 ? reader.nullableString() : null;
  const protocolType = reader.string();
  const protocols = reader.array((r) => ({ name: r.string(), metadata: r.bytes() })) ?? [];
  const respond = (result: JoinResult) => {
    if (v >= 2) body.int32(0);
    body.int16(result.error).int32(result.generation).string(result.protocolName);
    body.string(result.leader).string(result.memberId);
    body.array(result.members, (w, member) => {
      w.string(member.id);
      if (v >= 5) w.nullableString(member.groupInstanceId);
      w.nullableBytes(
        member.protocols.find((protocol) => protocol.name === result.protocolName)?.metadata ?? EMPTY,
      );
    });
  };
  const failure = (error: number, id = memberId): JoinResult => ({
    error,
    generation: -1,
    protocolName: '',
    leader: '',
    memberId: id,
    members: [],
  });
  if (groupId === '') return respond(failure(ERROR.INVALID_GROUP_ID));
  const group = broker.group(groupId);
  if (group.members.size > 0 && group.protocolType !== protocolType) {
    return respond(failure(ERROR.INCONSISTENT_GROUP_PROTOCOL));
  }
  if (memberId === '') {
    memberId = `${clientId || 'member'}-${randomUUID()}`;
    if (v >= 4) {
      group.pendingIds.add(memberId);
      return respond(failure(ERROR.MEMBER_ID_REQUIRED, memberId));
    }
  } else if (!group.members.has(memberId) && !group.pendingIds.has(memberId)) {
    return respond(failure(ERROR.UNKNOWN_MEMBER_ID));
  }
  group.pendingIds.delete(memberId);
  const previous = group.members.get(memberId);
  group.members.set(memberId, {
    id: memberId,
    groupInstanceId,
    clientId,
    clientHost,
    sessionTimeoutMs,
    rebalanceTimeoutMs,
    protocolType,
    protocols,
    assignment: previous?.assignment ?? EMPTY,
    lastSeen: Date.now(),
  });
  if (group.members.size === 1) group.protocolType = protocolType;
  const result = await new Promise<JoinResult>((resolve) => {
    group.joins.get(memberId)?.(failure(ERROR.UNKNOWN_MEMBER_ID));
    group.joins.set(memberId, resolve);
    broker.prepareRebalance(group);
  });
  respond(result);
}

async function syncGroup(
  broker: KafkaBroker,
  reader: WireReader,
  body: WireWriter,
  v: number,
): Promise<void> {
  const group = broker.groups.get(reader.string());
  const generation = reader.int32();
  const memberId = reader.string();
  if (v >= 3) reader.nullableString();
  const assignments = reader.array((r) => ({ memberId: r.string(), assignment: r.bytes() })) ?? [];
  const respond = (result: { error: number; assignment: Buffer }) => {
    if (v >= 1) body.int32(0);
    body.int16(result.error).nullableBytes(result.assignment);
  };
  const member = group?.members.get(memberId);
  if (!group || !member) return respond({ error: ERROR.UNKNOWN_MEMBER_ID, assignment: EMPTY });
  member.lastSeen = Date.now();
  if (group.state === 'PreparingRebalance')
    return respond({ error: ERROR.REBALANCE_IN_PROGRESS, assignment: EMPTY });
  if (generation !== group.generation) return respond({ error: ERROR.ILLEGAL_GENERATION, assignment: EMPTY });
  if (group.state === 'Stable') return respond({ error: ERROR.NONE, assignment: member.assignment });
  if (memberId === group.leader) {
    for (const entry of assignments) {
      const target = group.members.get(entry.memberId);
      if (target) target.assignment = entry.assignment;
    }
    group.state = 'Stable';
    for (const [id, waiting] of group.syncs)
      waiting({ error: ERROR.NONE, assignment: group.members.get(id)?.assignment ?? EMPTY });
    group.syncs.clear();
    return respond({ error: ERROR.NONE, assignment: member.assignment });
  }
  respond(await new Promise((resolve) => group.syncs.set(memberId, resolve)));
}

function offsetCommit(broker: KafkaBroker, reader: WireReader, body: WireWriter, v: number): void {
  const groupId = reader.string();
  const generation = reader.int32();
  const memberId = reader.string();
  if (v <= 4) reader.int64();
  if (v >= 7) reader.nullableString();
  const topics =
    reader.array((r) => ({
      name: r.string(),
      partitions:
        r.array((p) => {
          const index = p.int32();
          const offset = p.int64();
          const leaderEpoch = v >= 6 ? p.int32() : -1;
          return { index, offset, leaderEpoch, metadata: p.nullableString() };
        }) ?? [],
    })) ?? [];
  let groupError: number = ERROR.NONE;
  const existing = broker.groups.get(groupId);
  if (groupId === '') groupError = ERROR.INVALID_GROUP_ID;
  else if (generation < 0 && memberId === '') {
    // A commit from outside the group (an admin or a simple consumer): only while nobody is a member.
    if (existing && existing.members.size > 0) groupError = ERROR.UNKNOWN_MEMBER_ID;
  } else if (!existing?.members.has(memberId)) groupError = ERROR.UNKNOWN_MEMBER_ID;
  else if (existing.state === 'PreparingRebalance') groupError = ERROR.REBALANCE_IN_PROGRESS;
  else if (generation !== existing.generation) groupError = ERROR.ILLEGAL_GENERATION;
  const group = groupError === ERROR.NONE ? broker.group(groupId) : undefined;
  const member = group?.members.get(memberId);
  if (member) member.lastSeen = Date.now();
  if (v >= 3) body.int32(0);
  body.array(topics, (w, topic) => {
    w.string(topic.name).array(topic.partitions, (pw, partition) => {
      let error = groupError;
      if (error === ERROR.NONE && !broker.partitionOf(topic.name, partition.index))
        error = ERROR.UNKNOWN_TOPIC_OR_PARTITION;
      if (error === ERROR.NONE && group) {
        group.offsets.set(`${topic.name}\0${partition.index}`, {
          topic: topic.name,
          partition: partition.index,
          offset: partition.offset,
          leaderEpoch: partition.leaderEpoch,
          metadata: partition.metadata,
        });
      }
      pw.int32(partition.index).int16(error);
    });
  });
}

function offsetFetch(broker: KafkaBroker, reader: WireReader, body: WireWriter, v: number): void {
  const group = broker.groups.get(reader.string());
  const topics = reader.array((r) => ({ name: r.string(), partitions: r.array((p) => p.int32()) ?? [] }));
  const wanted =
    topics ??
    [...new Set([...(group?.offsets.values() ?? [])].map((entry) => entry.topic))].sort().map((name) => ({
      name,
      partitions: [...group!.offsets.values()]
        .filter((entry) => entry.topic === name)
        .map((entry) => entry.partition)
        .sort((a, b) => a - b),
    }));
  if (v >= 3) body.int32(0);
  body.array(wanted, (w, topic) => {
    w.string(topic.name).array(topic.partitions, (pw, index) => {
      const committed = group?.offsets.get(`${topic.name}\0${index}`);
      pw.int32(index).int64(committed?.offset ?? -1n);
      if (v >= 5) pw.int32(committed?.leaderEpoch ?? -1);
      pw.nullableString(committed?.metadata ?? (committed ? null : '')).int16(ERROR.NONE);
    });
  });
  if (v >= 2) body.int16(ERROR.NONE);
}
