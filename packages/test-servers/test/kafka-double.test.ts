import { execFile } from 'node:child_process';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type KafkaDouble, startKafkaDouble } from '../src/index.ts';
import { crc32c } from '../src/kafka-wire.ts';

// The double is proven with a client nobody here wrote: Debian's kcat (librdkafka 2.0).
function kcat(args: string[], input = '', timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      'kcat',
      args,
      { timeout: timeoutMs, killSignal: 'SIGKILL' },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`kcat ${args.join(' ')}: ${error.message}\n${stdout}\n${stderr}`));
        else resolve(stdout);
      },
    );
    child.stdin?.end(input);
  });
}

/** Sends one raw request frame and resolves with the response frame (without its size). */
function request(port: number, frame: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      const size = Buffer.alloc(4);
      size.writeInt32BE(frame.length);
      socket.write(Buffer.concat([size, frame]));
    });
    let received = Buffer.alloc(0);
    socket.on('data', (data) => {
      received = Buffer.concat([received, data]);
      if (received.length >= 4 && received.length >= 4 + received.readInt32BE(0)) {
        socket.end();
        resolve(received.subarray(4, 4 + received.readInt32BE(0)));
      }
    });
    socket.on('error', reject);
    socket.on('close', () => reject(new Error('the broker closed the connection without an answer')));
  });
}

let broker: KafkaDouble;

beforeAll(async () => {
  broker = await startKafkaDouble();
});

afterAll(async () => {
  await broker?.stop();
});

describe('startKafkaDouble, driven by kcat', () => {
  it('takes records with keys and headers, lists metadata, and serves them from a given offset', async () => {
    await kcat(
      ['-b', broker.bootstrap, '-P', '-t', 'plain', '-p', '0', '-K:', '-H', 'a=1', '-H', 'a=2'],
      'k0:v0\nk1:v1\nk2:v2\n',
    );
    const metadata = await kcat(['-b', broker.bootstrap, '-L', '-t', 'plain']);
    expect(metadata).toContain('topic "plain" with 1 partitions');
    expect(metadata).toContain(`broker 1 at ${broker.bootstrap}`);
    const read = await kcat([
      '-b',
      broker.bootstrap,
      '-C',
      '-t',
      'plain',
      '-p',
      '0',
      '-o',
      '1',
      '-e',
      '-q',
      '-f',
      '%o %k %s %h\\n',
    ]);
    expect(read).toBe('1 k1 v1 a=1,a=2\n2 k2 v2 a=1,a=2\n');
    expect(broker.log('plain', 0)).toMatchObject({ logStartOffset: 0n, highWatermark: 3n });
  });

  it('finds offsets by timestamp (ListOffsets) as kcat -Q asks', async () => {
    const before = Date.now();
    await kcat(['-b', broker.bootstrap, '-P', '-t', 'timed', '-p', '0'], 'x\n');
    await new Promise((resolve) => setTimeout(resolve, 20));
    const after = Date.now();
    await kcat(['-b', broker.bootstrap, '-P', '-t', 'timed', '-p', '0'], 'y\n');
    expect(await kcat(['-b', broker.bootstrap, '-Q', '-t', `timed:0:${before - 1}`])).toContain('offset 0');
    expect(await kcat(['-b', broker.bootstrap, '-Q', '-t', `timed:0:${after}`])).toContain('offset 1');
  });

  it('keeps a group’s committed offsets: a second kcat -G member resumes where the first stopped', async () => {
    await kcat(['-b', broker.bootstrap, '-P', '-t', 'jobs', '-p', '0'], 'j0\nj1\nj2\nj3\nj4\n');
    const first = await kcat([
      '-b',
      broker.bootstrap,
      '-G',
      'workers',
      '-X',
      'auto.offset.reset=earliest',
      '-c',
      '2',
      '-q',
      '-f',
      '%o\\n',
      'jobs',
    ]);
    expect(first).toBe('0\n1\n');
    const second = await kcat([
      '-b',
      broker.bootstrap,
      '-G',
      'workers',
      '-X',
      'auto.offset.reset=earliest',
      '-c',
      '3',
      '-q',
      '-f',
      '%o\\n',
      'jobs',
    ]);
    expect(second).toBe('2\n3\n4\n');
    expect(broker.requests).toContain('JoinGroup v5');
    expect(broker.requests).toContain('OffsetCommit v7');
  });

  it('refuses a record batch whose CRC-32C does not match (CORRUPT_MESSAGE)', async () => {
    // One record batch v2 holding one record (key null, value "v"), as the message-format page lays it out.
    const record = Buffer.from([0x10, 0x00, 0x00, 0x00, 0x01, 0x02, 0x76, 0x00]);
    const batch = Buffer.alloc(61 + record.length);
    batch.writeBigInt64BE(0n, 0);
    batch.writeInt32BE(batch.length - 12, 8);
    batch.writeInt8(2, 16);
    batch.writeInt32BE(0, 23);
    batch.writeBigInt64BE(BigInt(Date.now()), 27);
    batch.writeBigInt64BE(BigInt(Date.now()), 35);
    batch.writeBigInt64BE(-1n, 43);
    batch.writeInt16BE(-1, 51);
    batch.writeInt32BE(-1, 53);
    batch.writeInt32BE(1, 57);
    record.copy(batch, 61);
    batch.writeUInt32BE((crc32c(batch.subarray(21)) ^ 1) >>> 0, 17);
    const topic = Buffer.from('plain');
    const frame = Buffer.concat([
      Buffer.from([0, 0, 0, 3, 0, 0, 0, 7, 0xff, 0xff]), // Produce v3, correlation 7, null client id
      Buffer.from([0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x13, 0x88]), // null transactional id, acks -1, timeout 5000
      Buffer.from([0, 0, 0, 1, 0, topic.length]),
      topic,
      Buffer.from([0, 0, 0, 1, 0, 0, 0, 0]),
      Buffer.from([0, 0, (batch.length >> 8) & 0xff, batch.length & 0xff]),
      batch,
    ]);
    const response = await request(broker.port, frame);
    expect(response.readInt32BE(0)).toBe(7);
    // correlation, [responses] count, name, [partitions] count, index, error_code
    expect(response.readInt16BE(4 + 4 + 2 + topic.length + 4 + 4)).toBe(2);
    expect(broker.log('plain', 0)?.highWatermark).toBe(3n);
  });
});
