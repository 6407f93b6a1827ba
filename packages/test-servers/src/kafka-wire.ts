/**
 * The primitive types of the Kafka wire protocol (kafka.apache.org/protocol#protocol_types), as
 * the Kafka double reads requests and writes responses: big-endian integers, INT16-length strings
 * and INT32-length bytes for non-flexible versions, unsigned-varint lengths (+1) and tagged-field
 * sections for flexible ones, and the zig-zag varints of record batches v2.
 */

/** Reads one request body; throws `RangeError` past the end (the double then drops the connection). */
export class WireReader {
  offset = 0;
  readonly buffer: Buffer;
  constructor(buffer: Buffer) {
    this.buffer = buffer;
  }

  get remaining(): number {
    return this.buffer.length - this.offset;
  }
  int8(): number {
    const value = this.buffer.readInt8(this.offset);
    this.offset += 1;
    return value;
  }
  int16(): number {
    const value = this.buffer.readInt16BE(this.offset);
    this.offset += 2;
    return value;
  }
  int32(): number {
    const value = this.buffer.readInt32BE(this.offset);
    this.offset += 4;
    return value;
  }
  uint32(): number {
    const value = this.buffer.readUInt32BE(this.offset);
    this.offset += 4;
    return value;
  }
  int64(): bigint {
    const value = this.buffer.readBigInt64BE(this.offset);
    this.offset += 8;
    return value;
  }
  boolean(): boolean {
    return this.int8() !== 0;
  }
  /** UNSIGNED_VARINT. */
  uvarint(): number {
    let value = 0;
    let shift = 0;
    for (;;) {
      const byte = this.buffer[this.offset++];
      if (byte === undefined) throw new RangeError('varint past the end');
      value += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return value;
      shift += 7;
    }
  }
  /** VARINT (zig-zag). */
  varint(): number {
    const raw = this.uvarint();
    return raw % 2 === 0 ? raw / 2 : -(raw + 1) / 2;
  }
  /** VARLONG (zig-zag). */
  varlong(): bigint {
    let raw = 0n;
    let shift = 0n;
    for (;;) {
      const byte = this.buffer[this.offset++];
      if (byte === undefined) throw new RangeError('varlong past the end');
      raw |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) break;
      shift += 7n;
    }
    return (raw >> 1n) ^ -(raw & 1n);
  }
  raw(length: number): Buffer {
    if (length < 0 || this.offset + length > this.buffer.length) throw new RangeError('bytes past the end');
    const value = this.buffer.subarray(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }
  string(): string {
    const value = this.nullableString();
    if (value === null) throw new RangeError('null STRING');
    return value;
  }
  nullableString(): string | null {
    const length = this.int16();
    return length < 0 ? null : this.raw(length).toString('utf8');
  }
  compactString(): string {
    return this.compactNullableString() ?? '';
  }
  compactNullableString(): string | null {
    const length = this.uvarint() - 1;
    return length < 0 ? null : this.raw(length).toString('utf8');
  }
  nullableBytes(): Buffer | null {
    const length = this.int32();
    return length < 0 ? null : this.raw(length);
  }
  bytes(): Buffer {
    return this.nullableBytes() ?? Buffer.alloc(0);
  }
  /** ARRAY (INT32 length, -1 for null). */
  array<T>(item: (reader: WireReader) => T): T[] | null {
    const length = this.int32();
    if (length < 0) return null;
    const items: T[] = [];
    for (let index = 0; index < length; index += 1) items.push(item(this));
    return items;
  }
  /** Skips a tagged-field section (the double knows no tags). */
  taggedFields(): void {
    const count = this.uvarint();
    for (let index = 0; index < count; index += 1) {
      this.uvarint();
      this.raw(this.uvarint());
    }
  }
}

/** Builds one response body in chunks, joined once at the end. */
export class WireWriter {
  readonly #chunks: Buffer[] = [];

  #fixed(size: number, write: (buffer: Buffer) => void): this {
    const buffer = Buffer.allocUnsafe(size);
    write(buffer);
    this.#chunks.push(buffer);
    return this;
  }
  int8(value: number): this {
    return this.#fixed(1, (buffer) => buffer.writeInt8(value));
  }
  int16(value: number): this {
    return this.#fixed(2, (buffer) => buffer.writeInt16BE(value));
  }
  int32(value: number): this {
    return this.#fixed(4, (buffer) => buffer.writeInt32BE(value));
  }
  int64(value: bigint): this {
    return this.#fixed(8, (buffer) => buffer.writeBigInt64BE(value));
  }
  boolean(value: boolean): this {
    return this.int8(value ? 1 : 0);
  }
  uvarint(value: number): this {
    const bytes: number[] = [];
    let rest = value;
    while (rest >= 0x80) {
      bytes.push((rest % 0x80) | 0x80);
      rest = Math.floor(rest / 0x80);
    }
    bytes.push(rest);
    this.#chunks.push(Buffer.from(bytes));
    return this;
  }
  raw(value: Buffer): this {
    this.#chunks.push(value);
    return this;
  }
  string(value: string): this {
    return this.nullableString(value);
  }
  nullableString(value: string | null): this {
    if (value === null) return this.int16(-1);
    const bytes = Buffer.from(value, 'utf8');
    return this.int16(bytes.length).raw(bytes);
  }
  compactString(value: string): this {
    const bytes = Buffer.from(value, 'utf8');
    return this.uvarint(bytes.length + 1).raw(bytes);
  }
  nullableBytes(value: Buffer | null): this {
    if (value === null) return this.int32(-1);
    return this.int32(value.length).raw(value);
  }
  array<T>(items: readonly T[] | null, item: (writer: this, value: T) => void): this {
    if (items === null) return this.int32(-1);
    this.int32(items.length);
    for (const value of items) item(this, value);
    return this;
  }
  compactArray<T>(items: readonly T[], item: (writer: this, value: T) => void): this {
    this.uvarint(items.length + 1);
    for (const value of items) item(this, value);
    return this;
  }
  /** An empty tagged-field section. */
  taggedFields(): this {
    return this.uvarint(0);
  }
  toBuffer(): Buffer {
    return Buffer.concat(this.#chunks);
  }
}

const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let index = 0; index < 256; index += 1) {
    let crc = index;
    for (let bit = 0; bit < 8; bit += 1) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
    table[index] = crc >>> 0;
  }
  return table;
})();

/** CRC-32C (Castagnoli), the checksum of a record batch v2 (over attributes … end of records). */
export function crc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (let index = 0; index < bytes.length; index += 1) {
    crc = CRC32C_TABLE[(crc ^ bytes[index]!) & 0xff]! ^ (crc >>> 8);
  }
  return (crc ^ 0xffffffff) >>> 0;
}
