import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import {
  BkError,
  backup,
  ConfigError,
  collect,
  type Entry,
  gzip,
  MANIFEST_FORMAT,
  type Manifest,
  type ManifestEntry,
  MemoryStorage,
  manifestEntries,
  packTar,
  parseMtime,
  type Restorer,
  restore,
  type SidecarManifest,
  serializeManifest,
  sha256Hex,
  type TarRecordInput,
  verify,
} from '../src/index.ts';

const NAME = 'backup_20260101_000000';
const MTIME = '2026-01-01T00:00:00.000Z';

/** One entry of a crafted backup: what the manifest says, and the tar record(s) actually written. */
interface Crafted {
  manifest: ManifestEntry;
  /** Default: the record bk itself would write for `manifest` (a file's body is `body`). */
  tar?: TarRecordInput[];
  /** Raw tar bytes written instead of any record (headers bk's writer would never make). */
  raw?: Uint8Array;
  body?: Uint8Array;
}

async function* fromList<T>(items: T[]): AsyncIterable<T> {
  yield* items;
}

/**
 * The tar bytes of `records` without the end-of-archive marker, so that more records can follow
 * (packTar writes each stream's marker; a reader skips zero blocks, but the bytes stay exact).
 */
async function tarBytes(records: TarRecordInput[]): Promise<Uint8Array> {
  const bytes = await collect(packTar(fromList(records)), 1024 * 1024);
  return bytes.subarray(0, bytes.byteLength - 1024);
}

/** A ustar header block given another typeflag (and link name), its checksum recomputed. */
function retyped(header: Uint8Array, typeflag: string, linkname = ''): Uint8Array {
  const block = Buffer.from(header);
  block[156] = typeflag.charCodeAt(0);
  block.fill(0, 157, 257);
  block.write(linkname, 157, 100, 'utf8');
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return block;
}

function fileEntry(path: string, body: Uint8Array, extra: Partial<ManifestEntry> = {}): Crafted {
  return {
    manifest: {
      path,
      type: 'file',
      size: body.byteLength,
      sha256: sha256Hex(body),
      mode: 0o644,
      mtime: MTIME,
      ...extra,
    },
    body,
  };
}

function linkEntry(path: string, linkTarget: string, extra: Partial<ManifestEntry> = {}): Crafted {
  return { manifest: { path, type: 'symlink', size: 0, linkTarget, mode: 0o777, mtime: MTIME, ...extra } };
}

function defaultRecord(entry: Crafted): TarRecordInput {
  const { manifest } = entry;
  return {
    name: `files/${manifest.path}`,
    type: manifest.type,
    size: manifest.type === 'file' ? manifest.size : 0,
    mode: manifest.mode,
    ...(manifest.mtime === undefined ? {} : { mtime: new Date(0), mtimeNs: parseMtime(manifest.mtime) }),
    linkTarget: manifest.linkTarget,
    body: entry.body,
  };
}

/**
 * Writes a backup by hand into `storage`: sizes and sha256s are right unless a test says
 * otherwise, so only what the test crafts is hostile. `patch` edits the sidecar (and the inner
 * manifest, which must match it) before they are written.
 */
async function writeCrafted(
  entries: Crafted[],
  patch: (manifest: Record<string, unknown>) => void = () => {},
): Promise<MemoryStorage> {
  const manifest: Manifest = {
    format: MANIFEST_FORMAT,
    // Format 1 lists the entries in the manifest itself, where a test can craft them; the same
    // checks run on a format-2 entry index line by line.
    formatVersion: 1,
    name: NAME,
    createdAt: MTIME,
    completedAt: MTIME,
    bk: { version: '0.1.0' },
    compression: 'gzip',
    encryption: null,
    parent: null,
    labels: {},
    components: [
      {
        name: 'files',
        kind: 'files',
        info: {},
        entries: entries.map((entry) => entry.manifest),
        stats: {
          entries: entries.length,
          bytes: entries.reduce((sum, entry) => sum + entry.manifest.size, 0),
        },
      },
    ],
  };
  // The tar records are made before `patch`: it changes what the manifest says, not the archive.
  const tars = entries.map((entry) => entry.raw ?? entry.tar ?? [defaultRecord(entry)]);
  patch(manifest as unknown as Record<string, unknown>);
  const inner = serializeManifest(manifest);
  const records = (async function* (): AsyncIterable<Uint8Array> {
    for (const entry of tars) {
      if (entry instanceof Uint8Array) yield entry;
      else yield* packTar(fromList(entry.map((record) => ({ ...record }))));
    }
    yield* packTar(fromList([{ name: 'manifest.json', type: 'file', size: inner.byteLength, body: inner }]));
  })();
  const archive = await collect(gzip(records), 64 * 1024 * 1024);
  const key = `${NAME}.tar.gz`;
  const sidecar: SidecarManifest = {
    ...manifest,
    archive: { key, size: archive.byteLength, sha256: sha256Hex(archive) },
  };
  const storage = new MemoryStorage();
  await storage.put(key, archive);
  await storage.put(`${NAME}.manifest.json`, serializeManifest(sidecar));
  return storage;
}

/** A restorer that only records what it is handed (and reads every body). */
function recorder(): Restorer & { seen: Entry[] } {
  const seen: Entry[] = [];
  return {
    kind: 'files',
    name: 'files',
    seen,
    async restore(entries) {
      for await (const entry of entries) {
        if (entry.body) await collect(entry.body);
        seen.push(entry);
      }
      return { entries: seen.length, bytes: 0 };
    },
  };
}

async function caught(promise: Promise<unknown>): Promise<BkError> {
  try {
    await promise;
  } catch (error) {
    if (BkError.isInstance(error)) return error;
    throw error;
  }
  throw new Error('expected the call to throw');
}

/** Verify and restore must both refuse the backup, with `code` and a message matching `message`. */
async function expectRefused(storage: MemoryStorage, code: string, message: RegExp): Promise<void> {
  const verified = await caught(verify({ storage, name: NAME }));
  expect(verified.code, verified.message).toBe(code);
  expect(verified.message).toMatch(message);
  const restorer = recorder();
  const restored = await caught(
    restore({ storage, name: NAME, restorers: [restorer], conflict: 'overwrite' }),
  );
  expect(restored.code, restored.message).toBe(code);
  expect(restored.message).toMatch(message);
}

const text = (value: string) => new TextEncoder().encode(value);

describe('symbolic links in archives', () => {
  it('verifies and hands out absolute, escaping and dangling links as they were', async () => {
    const storage = await writeCrafted([
      linkEntry('etc/localtime', '/usr/share/zoneinfo/UTC'),
      linkEntry('etc/escape', '../../../outside'),
      linkEntry('etc/dangling', 'missing'),
      fileEntry('etc/hostname', text('host\n')),
    ]);
    await verify({ storage, name: NAME });
    const restorer = recorder();
    await restore({ storage, name: NAME, restorers: [restorer] });
    expect(restorer.seen.map((entry) => [entry.path, entry.linkTarget])).toEqual([
      ['etc/localtime', '/usr/share/zoneinfo/UTC'],
      ['etc/escape', '../../../outside'],
      ['etc/dangling', 'missing'],
      ['etc/hostname', undefined],
    ]);
  });

  for (const [title, entries, problem] of [
    [
      'an entry under a link',
      [linkEntry('d', '/outside'), fileEntry('d/x', text('x'))],
      /"d\/x" lies under "d", which is a symbolic link/,
    ],
    [
      'a link above entries listed before it',
      [fileEntry('d/x', text('x')), linkEntry('d', '/outside')],
      /"d" is a symbolic link, yet other entries lie under it/,
    ],
    [
      'an entry under a file',
      [fileEntry('f', text('f')), fileEntry('f/g', text('g'))],
      /"f\/g" lies under "f", which is a file/,
    ],
    [
      'an entry under a link, deeper',
      [linkEntry('a/b', '/'), fileEntry('a/b/c/d', text('x'))],
      /"a\/b\/c\/d" lies under "a\/b"/,
    ],
  ] as const) {
    it(`refuses ${title} before anything is restored`, async () => {
      const storage = await writeCrafted([...entries]);
      await expectRefused(storage, 'BK_MANIFEST', problem);
    });
  }

  it('refuses at backup time an entry no restore could write', async () => {
    const storage = new MemoryStorage();
    const error = await caught(
      backup({
        storage,
        components: [
          {
            kind: 'test',
            name: 'links',
            describe: async () => ({}),
            async *backup() {
              yield { path: 'l', type: 'symlink', linkTarget: '/etc' };
              yield { path: 'l/passwd', size: 0 };
            },
          },
        ],
      }),
    );
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toMatch(/links: .*"l\/passwd" lies under "l", which is a symbolic link/);
    expect([...(await collect(storage.list('')))]).toEqual([]);
  });
});

describe('counts and sizes a manifest cannot hold', () => {
  const body = text('small\n');
  const cases: Array<[string, (manifest: Record<string, unknown>) => void, RegExp]> = [
    [
      '100,000,000 chunks of a 6-byte entry',
      (m) => (entryOf(m).chunks = 100_000_000),
      /entries\[0\]\.chunks \(100000000\) cannot exceed/,
    ],
    [
      '2^32 chunks',
      (m) => (entryOf(m).chunks = 2 ** 32),
      /entries\[0\]\.chunks \(4294967296\) cannot exceed/,
    ],
    ['0 chunks', (m) => (entryOf(m).chunks = 0), /chunks must be at least 1/],
    [
      'a size the archive cannot hold, in as many chunks',
      (m) => Object.assign(entryOf(m), { size: 2 ** 40, chunks: 2 ** 20 }),
      /than an archive of \d+ bytes can hold/,
    ],
    [
      '2^40 entries in the stats',
      (m) => (componentOf(m).stats.entries = 2 ** 40),
      /stats\.entries \(1099511627776\) is more than/,
    ],
    [
      '2^50 bytes in the stats',
      (m) => (componentOf(m).stats.bytes = 2 ** 50),
      /stats\.bytes .* is more than/,
    ],
  ];
  for (const [title, patch, message] of cases) {
    it(`refuses ${title} before allocating anything`, async () => {
      const storage = await writeCrafted([fileEntry('data.bin', body)], patch);
      await expectRefused(storage, 'BK_MANIFEST', message);
    });
  }

  it('reads a legitimately chunked entry', async () => {
    const storage = new MemoryStorage();
    const payload = new Uint8Array(20_000).fill(7);
    await backup({
      storage,
      chunkSize: 4096,
      components: [
        {
          kind: 'files',
          name: 'files',
          describe: async () => ({}),
          async *backup() {
            yield {
              path: 'stream',
              body: (async function* () {
                yield payload;
              })(),
            };
          },
        },
      ],
    });
    const verified = await verify({ storage, name: 'latest' });
    for await (const { record } of manifestEntries(storage, verified.manifest)) expect(record.chunks).toBe(5);
  });
});

describe('strict entry fields', () => {
  const cases: Array<[string, Partial<ManifestEntry>, RegExp]> = [
    ['mtime "garbage"', { mtime: 'garbage' }, /entries\[0\]\.mtime must be an ISO 8601 UTC time/],
    ['a 31st of February', { mtime: '2026-02-31T00:00:00Z' }, /entries\[0\]\.mtime/],
    ['an mtime with an offset', { mtime: '2026-01-01T00:00:00+01:00' }, /entries\[0\]\.mtime/],
    ['ten fraction digits', { mtime: '2026-01-01T00:00:00.1234567890Z' }, /entries\[0\]\.mtime/],
    ['a number as mtime', { mtime: 1 as unknown as string }, /entries\[0\]\.mtime/],
    ['mode 2^40', { mode: 2 ** 40 }, /entries\[0\]\.mode must be permission bits/],
    ['mode -1', { mode: -1 }, /entries\[0\]\.mode/],
    ['mode 0o10000', { mode: 0o10000 }, /entries\[0\]\.mode/],
    ['mode 1.5', { mode: 1.5 }, /entries\[0\]\.mode/],
  ];
  for (const [title, extra, message] of cases) {
    it(`refuses ${title} with a ManifestError naming the field`, async () => {
      const entry = fileEntry('a.txt', text('a'), {});
      const storage = await writeCrafted([
        { ...entry, manifest: { ...entry.manifest, ...extra }, tar: [defaultRecord(entry)] },
      ]);
      await expectRefused(storage, 'BK_MANIFEST', message);
    });
  }

  for (const linkTarget of ['', 'a\0b']) {
    it(`refuses the link target ${JSON.stringify(linkTarget)} with a ManifestError naming the field`, async () => {
      const entry = linkEntry('l', 'ok.txt');
      const storage = await writeCrafted([
        { ...entry, manifest: { ...entry.manifest, linkTarget }, tar: [defaultRecord(entry)] },
      ]);
      await expectRefused(storage, 'BK_MANIFEST', /entries\[0\]\.linkTarget must be a non-empty path/);
    });
  }

  it('accepts nanosecond mtimes and the millisecond ones earlier backups wrote', async () => {
    for (const mtime of [
      '2026-01-01T00:00:00.999600001Z',
      '2026-01-01T00:00:00.123Z',
      '2026-01-01T00:00:00Z',
    ]) {
      const storage = await writeCrafted([fileEntry('a.txt', text('a'), { mtime })]);
      await verify({ storage, name: NAME });
    }
  });
});

function componentOf(manifest: Record<string, unknown>) {
  return (manifest as unknown as Manifest).components[0]!;
}

function entryOf(manifest: Record<string, unknown>): ManifestEntry {
  return componentOf(manifest).entries[0]!;
}

describe('verify compares tar headers with the manifest', () => {
  const okTarget = 'ok.txt';
  const cases: Array<[string, () => Promise<Crafted>, RegExp]> = [
    [
      'a link whose header points elsewhere (GNU tar would extract l -> /etc/passwd)',
      async () => ({
        ...linkEntry('l', okTarget),
        tar: [{ ...defaultRecord(linkEntry('l', okTarget)), linkTarget: '/etc/passwd' }],
      }),
      /"files\/l" has the link target "\/etc\/passwd" in its tar header but "ok.txt" in the manifest/,
    ],
    [
      'a link whose long pax linkpath points elsewhere',
      async () => ({
        ...linkEntry('l', okTarget),
        tar: [{ ...defaultRecord(linkEntry('l', okTarget)), linkTarget: `/etc/${'x'.repeat(120)}` }],
      }),
      /link target "\/etc\/x+" in its tar header/,
    ],
    [
      'a setuid mode in the header only',
      async () => {
        const entry = fileEntry('run.sh', text('#!/bin/sh\n'), { mode: 0o755 });
        return { ...entry, tar: [{ ...defaultRecord(entry), mode: 0o4755 }] };
      },
      /"files\/run.sh" has mode 0o4755 in its tar header but 0o755 in the manifest/,
    ],
    [
      'another second in the header',
      async () => {
        const entry = fileEntry('a.txt', text('a'));
        return { ...entry, tar: [{ ...defaultRecord(entry), mtimeNs: 1_767_225_601_000_000_000n }] };
      },
      /has mtime 2026-01-01T00:00:01.000Z in its tar header but 2026-01-01T00:00:00.000Z/,
    ],
    [
      'a pax mtime a nanosecond off',
      async () => {
        const entry = fileEntry('a.txt', text('a'), { mtime: '2026-01-01T00:00:00.999600000Z' });
        return { ...entry, tar: [{ ...defaultRecord(entry), mtimeNs: 1_767_225_600_999_600_001n }] };
      },
      /has mtime 2026-01-01T00:00:00.999600001Z in its tar header but 2026-01-01T00:00:00.999600000Z/,
    ],
    [
      'a hard link where the manifest has a file',
      async () => {
        const entry = fileEntry('h', new Uint8Array(0));
        const bytes = await tarBytes([defaultRecord(entry)]);
        return { ...entry, raw: retyped(bytes.subarray(0, 512), '1', 'files/other') };
      },
      /"files\/h" is a hard link in the archive but a file in the manifest/,
    ],
    [
      'a FIFO where the manifest has a file',
      async () => {
        const entry = fileEntry('p', new Uint8Array(0));
        const bytes = await tarBytes([defaultRecord(entry)]);
        return { ...entry, raw: retyped(bytes.subarray(0, 512), '6') };
      },
      /"files\/p" is a FIFO in the archive but a file in the manifest/,
    ],
    [
      'a character device where the manifest has a file',
      async () => {
        const entry = fileEntry('c', new Uint8Array(0));
        const bytes = await tarBytes([defaultRecord(entry)]);
        return { ...entry, raw: retyped(bytes.subarray(0, 512), '3') };
      },
      /"files\/c" is a character device in the archive/,
    ],
    [
      'a directory where the manifest has a link',
      async () => ({
        ...linkEntry('d', okTarget),
        tar: [{ name: 'files/d', type: 'directory', size: 0, mode: 0o777, mtimeNs: parseMtime(MTIME) }],
      }),
      /"files\/d" is a directory in the archive but a symbolic link in the manifest/,
    ],
  ];
  for (const [title, build, message] of cases) {
    it(`fails verify and restore on ${title}`, async () => {
      const storage = await writeCrafted([fileEntry('first.txt', text('first')), await build()]);
      await expectRefused(storage, 'BK_INTEGRITY', message);
    });
  }

  it('fails on a chunk of a chunked entry that is not a file', async () => {
    const body = text('abcdef');
    const entry = fileEntry('s', body, { chunks: 2 });
    const first = await tarBytes([
      {
        name: 'files/s/part-000000',
        type: 'file',
        size: 3,
        mode: 0o644,
        mtimeNs: parseMtime(MTIME),
        body: body.subarray(0, 3),
      },
    ]);
    const second = await tarBytes([
      { name: 'files/s/part-000001', type: 'file', size: 0, mode: 0o644, body: new Uint8Array(0) },
    ]);
    const raw = new Uint8Array([...first, ...retyped(second.subarray(0, 512), '1', 'x')]);
    const storage = await writeCrafted([{ ...entry, raw }]);
    await expectRefused(storage, 'BK_INTEGRITY', /"files\/s" is a hard link in the archive but a file/);
  });
});

describe('the sidecar archive key', () => {
  for (const key of ['../x.tar.gz', '/abs.tar.gz', 'backup_20250101_000000.tar.gz', `${NAME}.tar.zst`]) {
    it(`refuses "${key}" as a ManifestError, not a bad argument`, async () => {
      const storage = await writeCrafted([fileEntry('a.txt', text('a'))]);
      const sidecarKey = `${NAME}.manifest.json`;
      const sidecar = JSON.parse(new TextDecoder().decode(await collect(await storage.get(sidecarKey))));
      sidecar.archive.key = key;
      await storage.put(sidecarKey, new TextEncoder().encode(JSON.stringify(sidecar)));
      await expectRefused(
        storage,
        'BK_MANIFEST',
        new RegExp(`archive\\.key "${key.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}"`),
      );
    });
  }
});

describe('what GNU tar sees', () => {
  it('an archive GNU tar lists as l -> /etc/passwd fails verify when the manifest says ok.txt', async () => {
    const entry = linkEntry('l', 'ok.txt');
    const storage = await writeCrafted([
      { ...entry, tar: [{ ...defaultRecord(entry), linkTarget: '/etc/passwd' }] },
    ]);
    const archive = await collect(await storage.get(`${NAME}.tar.gz`));
    const listing = spawnSync('tar', ['-tvzf', '-'], { input: archive }).stdout.toString();
    expect(listing).toContain('files/l -> /etc/passwd');
    await expectRefused(
      storage,
      'BK_INTEGRITY',
      /link target "\/etc\/passwd" in its tar header but "ok.txt"/,
    );
  });
});
