import { IntegrityError } from './support.ts';

/**
 * The `.meta` file of a portable backup is the proto2 message `backup_util.PortableData`:
 * `Data` (field 1, the raw `meta.Data` blob of the type-1 reply) and `MaxNodeID` (field 2,
 * always 0 in OSS). Written byte-identical to `influxd backup -portable`.
 */
export function encodeMetaFile(blob: Uint8Array, maxNodeId = 0): Buffer {
  return Buffer.concat([
    Buffer.from([0x0a]),
    encodeVarint(blob.byteLength),
    blob,
    Buffer.from([0x10]),
    encodeVarint(maxNodeId),
  ]);
}

/**
 * Unwraps a `.meta` file into the raw `meta.Data` blob that a metastore update (type 6) takes.
 *
 * @throws {IntegrityError} when the file is not a `PortableData` message with a `Data` field.
 */
export function decodeMetaFile(file: Uint8Array): Buffer {
  let data: Buffer | undefined;
  for (const field of fields(file)) {
    if (field.number === 1 && field.bytes) data = field.bytes;
  }
  if (!data) throw new IntegrityError('The .meta file holds no metastore (PortableData.Data is missing).');
  return data;
}

/** A database in a `meta.Data` blob, with its retention policies. */
export interface MetaDatabase {
  name: string;
  defaultRetentionPolicy: string;
  retentionPolicies: string[];
  continuousQueries: number;
}

/** The databases a `meta.Data` blob defines (field 5 `Databases`) and how many users it holds. */
export function readMetastore(blob: Uint8Array): { databases: MetaDatabase[]; users: number } {
  const databases: MetaDatabase[] = [];
  let users = 0;
  for (const field of fields(blob)) {
    if (field.number === 6) users += 1;
    if (field.number !== 5 || !field.bytes) continue;
    const database: MetaDatabase = {
      name: '',
      defaultRetentionPolicy: '',
      retentionPolicies: [],
      continuousQueries: 0,
    };
    for (const inner of fields(field.bytes)) {
      if (!inner.bytes) continue;
      if (inner.number === 1) database.name = inner.bytes.toString('utf8');
      else if (inner.number === 2) database.defaultRetentionPolicy = inner.bytes.toString('utf8');
      else if (inner.number === 4) database.continuousQueries += 1;
      else if (inner.number === 3) {
        for (const policy of fields(inner.bytes)) {
          if (policy.number === 1 && policy.bytes)
            database.retentionPolicies.push(policy.bytes.toString('utf8'));
        }
      }
    }
    databases.push(database);
  }
  return { databases, users };
}

function encodeVarint(value: number): Buffer {
  const bytes: number[] = [];
  let rest = BigInt(value);
  do {
    let byte = Number(rest & 0x7fn);
    rest >>= 7n;
    if (rest > 0n) byte |= 0x80;
    bytes.push(byte);
  } while (rest > 0n);
  return Buffer.from(bytes);
}

interface Field {
  number: number;
  /** Length-delimited fields only. */
  bytes?: Buffer;
}

function* fields(message: Uint8Array): Iterable<Field> {
  const buffer = Buffer.from(message.buffer, message.byteOffset, message.byteLength);
  let offset = 0;
  const varint = (): bigint => {
    let result = 0n;
    for (let shift = 0n; ; shift += 7n) {
      if (offset >= buffer.byteLength || shift > 63n)
        throw new IntegrityError('Malformed protobuf: bad varint.');
      const byte = buffer[offset++]!;
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
    }
  };
  while (offset < buffer.byteLength) {
    const key = varint();
    const number = Number(key >> 3n);
    const wireType = Number(key & 7n);
    if (wireType === 0) {
      varint();
      yield { number };
    } else if (wireType === 1 || wireType === 5) {
      offset += wireType === 1 ? 8 : 4;
      yield { number };
    } else if (wireType === 2) {
      const length = Number(varint());
      if (offset + length > buffer.byteLength)
        throw new IntegrityError('Malformed protobuf: truncated field.');
      yield { number, bytes: buffer.subarray(offset, offset + length) };
      offset += length;
    } else {
      throw new IntegrityError(`Malformed protobuf: unsupported wire type ${wireType}.`);
    }
  }
  if (offset !== buffer.byteLength) throw new IntegrityError('Malformed protobuf: truncated field.');
}
