import { crc32 } from 'node:zlib';

/**
 * The on-disk format of a {@link DrArchiver} spool segment: a sequence of records, each
 * `u32 LE payload length`, `u32 LE crc32(payload)`, payload. A payload is UTF-8
 * `db \n rp \n day \n line \n line …` (names and lines never hold a line break). A record whose
 * header or payload is cut short, or whose checksum does not match, ends the segment: a crash
 * mid-append leaves such a torn tail, and nothing after it was ever acknowledged.
 */
export interface SpoolRecord {
  db: string;
  rp: string;
  day: string;
  lines: string[];
}

const HEADER_BYTES = 8;

/** The bytes of one record. */
export function encodeRecord(record: SpoolRecord): Buffer {
  const payload = Buffer.from(
    `${record.db}\n${record.rp}\n${record.day}\n${record.lines.join('\n')}`,
    'utf8',
  );
  const header = Buffer.allocUnsafe(HEADER_BYTES);
  header.writeUInt32LE(payload.byteLength, 0);
  header.writeUInt32LE(crc32(payload), 4);
  return Buffer.concat([header, payload]);
}

/** Every whole, intact record of a segment, and how many trailing bytes were dropped. */
export function decodeSegment(bytes: Uint8Array): { records: SpoolRecord[]; droppedBytes: number } {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const records: SpoolRecord[] = [];
  let offset = 0;
  while (offset + HEADER_BYTES <= buffer.byteLength) {
    const length = buffer.readUInt32LE(offset);
    const checksum = buffer.readUInt32LE(offset + 4);
    const end = offset + HEADER_BYTES + length;
    if (end > buffer.byteLength) break;
    const payload = buffer.subarray(offset + HEADER_BYTES, end);
    if (crc32(payload) !== checksum) break;
    const [db, rp, day, ...lines] = payload.toString('utf8').split('\n');
    if (db === undefined || rp === undefined || day === undefined || lines.length === 0) break;
    records.push({ db, rp, day, lines });
    offset = end;
  }
  return { records, droppedBytes: buffer.byteLength - offset };
}
