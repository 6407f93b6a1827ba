import { deepStrictEqual, rejects, strictEqual } from 'node:assert/strict';
import { collect, fromBytes, packTar } from '@bk/core';
import { describe, it } from 'vitest';
import {
  decodeMetaFile,
  encodeMetaFile,
  encodeRequest,
  parsePortableFileName,
  portableBaseName,
} from '../src/index.ts';
import { checkTar } from '../src/portable/tar-check.ts';

describe('portable format pieces', () => {
  it('frames a request exactly as the Go client does', () => {
    const bytes = encodeRequest({
      type: 6,
      backupDatabase: 'beta',
      restoreDatabase: 'beta_viaproxy',
      uploadSize: 1135,
    });
    strictEqual(
      bytes.toString('latin1'),
      '\x03\x06{"Type":6,"BackupDatabase":"beta","RestoreDatabase":"beta_viaproxy","BackupRetentionPolicy":"","RestoreRetentionPolicy":"","ShardID":0,"Since":"0001-01-01T00:00:00Z","ExportStart":"0001-01-01T00:00:00Z","ExportEnd":"0001-01-01T00:00:00Z","UploadSize":1135}\n',
    );
  });

  it('wraps and unwraps the .meta PortableData, names files as influxd does', () => {
    const blob = Buffer.alloc(411, 7);
    const file = encodeMetaFile(blob);
    deepStrictEqual([...file.subarray(0, 3)], [0x0a, 0x9b, 0x03]);
    deepStrictEqual([...file.subarray(-2)], [0x10, 0x00]);
    strictEqual(file.byteLength, 416);
    deepStrictEqual(decodeMetaFile(file), blob);
    strictEqual(portableBaseName(new Date('2026-11-21T04:55:32.123Z')), '20261121T045532Z');
    deepStrictEqual(parsePortableFileName('20261121T045532Z.s12.tar.gz'), {
      base: '20261121T045532Z',
      kind: 'shard',
      shardId: 12,
    });
  });

  it('fails a shard tar that breaks off or lacks its end-of-archive marker', async () => {
    const tar = await collect(
      packTar(
        (async function* () {
          yield {
            name: 'db/rp/1/000000001-000000001.tsm',
            type: 'file' as const,
            size: 700,
            body: new Uint8Array(700),
          };
        })(),
      ),
    );
    let size = -1;
    strictEqual(
      (await collect(checkTar(fromBytes(tar), 'shard', (bytes) => (size = bytes)))).byteLength,
      tar.byteLength,
    );
    strictEqual(size, tar.byteLength);
    await rejects(
      collect(checkTar(fromBytes(tar.subarray(0, 1536)), 'shard 1', () => {})),
      /shard 1 is truncated/,
    );
    await rejects(
      collect(checkTar(fromBytes(tar.subarray(0, tar.byteLength - 1024)), 'shard 1', () => {})),
      /truncated/,
    );
  });
});
