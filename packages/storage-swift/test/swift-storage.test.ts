import { execFile } from 'node:child_process';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BkError, type ByteStream } from '@bk/core';
import { listenOnFreePort, type SwiftServer, startSwift } from '@bk/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SwiftAuth, SwiftStorage, type SwiftStorageOptions, storageFromUrl } from '../src/index.ts';

const MiB = 1024 * 1024;
let swift: SwiftServer;
let scratch: string;
const run = promisify(execFile);

beforeAll(async () => {
  swift = await startSwift();
  scratch = await mkdtemp(join(tmpdir(), 'bk-swift-test-'));
}, 130_000);
afterAll(async () => {
  await swift?.stop();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

const v1 = (): SwiftAuth => ({ kind: 'v1', authUrl: swift.authUrl, user: swift.user, key: swift.key });
const fresh = (name: string) => `${name}-${randomBytes(4).toString('hex')}`;

function storage(options: Partial<SwiftStorageOptions> = {}): SwiftStorage {
  return new SwiftStorage({ container: fresh('t'), auth: v1(), ...options });
}

async function keys(target: SwiftStorage, prefix = ''): Promise<string[]> {
  const found: string[] = [];
  for await (const object of target.list(prefix)) found.push(object.key);
  return found.sort();
}

/** What is left in the hidden segments container of `target`. */
async function segmentsLeft(target: SwiftStorage, container = target.container): Promise<string[]> {
  return keys(new SwiftStorage({ container: `${container}_segments`, auth: v1() }));
}

/** `total` bytes of AES-CTR keystream from `seed`: random-looking, reproducible, never all in memory. */
function seededBody(total: number, seed: string, chunk = MiB): { body: ByteStream; sha256: () => string } {
  const hash = createHash('sha256');
  const cipher = createCipheriv('aes-128-ctr', createHash('md5').update(seed).digest(), Buffer.alloc(16));
  const zeros = Buffer.alloc(chunk);
  async function* body(): ByteStream {
    for (let sent = 0; sent < total; sent += chunk) {
      const bytes = cipher.update(zeros.subarray(0, Math.min(chunk, total - sent)));
      hash.update(bytes);
      yield bytes;
    }
  }
  return { body: body(), sha256: () => hash.digest('hex') };
}

async function sha256Of(stream: ByteStream): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of stream) {
    hash.update(chunk);
    size += chunk.byteLength;
  }
  return { sha256: hash.digest('hex'), size };
}

function isSegmentPut(input: RequestInfo | URL, init?: RequestInit): boolean {
  return init?.method === 'PUT' && /_segments\/.+/.test(String(input));
}

async function code(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'resolved';
  } catch (error) {
    return BkError.isInstance(error) ? error.code : `not a BkError: ${String(error)}`;
  }
}

describe('SwiftStorage large objects', () => {
  it('round-trips 1 GiB through an SLO of 64 MiB segments, sha256 compared', async () => {
    const target = storage();
    const { body, sha256 } = seededBody(1024 * MiB, 'one gibibyte');
    const started = Date.now();
    const info = await target.put('big/backup_20261121_101500.tar.gz', body);
    const uploaded = Date.now();
    expect(info.size).toBe(1024 * MiB);
    expect((await segmentsLeft(target)).length).toBe(16);
    const read = await sha256Of(await target.get('big/backup_20261121_101500.tar.gz'));
    expect(read).toEqual({ sha256: sha256(), size: 1024 * MiB });
    console.log(`1 GiB: upload ${uploaded - started} ms, download ${Date.now() - uploaded} ms`);
    await target.delete('big/backup_20261121_101500.tar.gz');
    expect(await segmentsLeft(target)).toEqual([]);
    expect(await keys(target)).toEqual([]);
  }, 600_000);

  it('a failing Nth segment PUT rejects the put and leaves no object and no segment', async () => {
    let segmentPuts = 0;
    const failing: typeof fetch = async (input, init) => {
      if (isSegmentPut(input, init) && ++segmentPuts === 3) return new Response('injected', { status: 403 });
      return fetch(input, init);
    };
    const target = storage({ segmentSize: MiB, fetch: failing });
    const { body } = seededBody(8 * MiB, 'fails', 256 * 1024);
    expect(await code(target.put('broken.bin', body))).toBe('BK_STORAGE');
    expect(await target.stat('broken.bin')).toBeUndefined();
    expect(await keys(target)).toEqual([]);
    expect(await segmentsLeft(target)).toEqual([]);
  });

  it('retries a segment PUT after a 503 and a connection reset', async () => {
    let segmentPuts = 0;
    const flaky: typeof fetch = async (input, init) => {
      if (isSegmentPut(input, init)) {
        segmentPuts += 1;
        if (segmentPuts === 2) return new Response('busy', { status: 503 });
        if (segmentPuts === 4) throw new TypeError('fetch failed', { cause: { code: 'ECONNRESET' } });
      }
      return fetch(input, init);
    };
    const target = storage({ segmentSize: MiB, fetch: flaky });
    const { body, sha256 } = seededBody(5 * MiB + 3, 'flaky', 100_000);
    await target.put('flaky.bin', body);
    expect(await sha256Of(await target.get('flaky.bin'))).toEqual({ sha256: sha256(), size: 5 * MiB + 3 });
    expect(segmentPuts).toBe(8);
  });

  it('a manifest PUT whose reply is lost is confirmed by HEAD, not replayed', async () => {
    let manifestPuts = 0;
    const lossy: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      if (init?.method === 'PUT' && String(input).includes('multipart-manifest=put')) {
        manifestPuts += 1;
        await response.body?.cancel();
        throw new TypeError('fetch failed', { cause: { code: 'ECONNRESET' } });
      }
      return response;
    };
    const target = storage({ segmentSize: MiB, fetch: lossy });
    const { body, sha256 } = seededBody(3 * MiB, 'lossy');
    const info = await target.put('lost-reply.bin', body, { ifNoneMatch: true });
    expect(manifestPuts).toBe(1);
    expect(info.size).toBe(3 * MiB);
    expect((await sha256Of(await target.get('lost-reply.bin'))).sha256).toBe(sha256());
  });

  it('an abort mid-upload rejects with BK_ABORTED and leaves no object and no segment', async () => {
    const controller = new AbortController();
    let segmentPuts = 0;
    const counting: typeof fetch = async (input, init) => {
      if (isSegmentPut(input, init) && ++segmentPuts === 3) controller.abort();
      return fetch(input, init);
    };
    const target = storage({ segmentSize: MiB, fetch: counting, concurrency: 2 });
    const { body } = seededBody(32 * MiB, 'abort', 256 * 1024);
    expect(await code(target.put('aborted.bin', body, { signal: controller.signal }))).toBe('BK_ABORTED');
    expect(await target.stat('aborted.bin')).toBeUndefined();
    expect(await segmentsLeft(target)).toEqual([]);
  });

  it('overwriting an SLO deletes the old segments', async () => {
    const target = storage({ segmentSize: MiB });
    await target.put('again.bin', seededBody(3 * MiB, 'first').body);
    const second = seededBody(2 * MiB + 1, 'second');
    await target.put('again.bin', second.body);
    expect((await sha256Of(await target.get('again.bin'))).sha256).toBe(second.sha256());
    expect((await segmentsLeft(target)).length).toBe(3);
  });

  it('cleanupIncomplete deletes the segments of dead and replaced uploads, never those in use or of other tools', async () => {
    const target = storage({ segmentSize: MiB });
    const kept = seededBody(3 * MiB, 'kept');
    await target.put('kept.bin', kept.body);
    const inUse = await segmentsLeft(target);
    // What killed runs leave: an overwrite that died before deleting the old object's segments,
    // and a put that died before its manifest. And a segment `swift upload --use-slo` wrote.
    const raw = new SwiftStorage({ container: `${target.container}_segments`, auth: v1() });
    const leftovers = [
      'kept.bin/lz1abcde-0123456789ab/00000000',
      'dead/one.bin/lz1abcdf-0123456789ac/00000000',
      'dead/one.bin/lz1abcdf-0123456789ac/00000001',
    ];
    const foreign = 'other.bin/slo/1700000000.000000/3145728/1048576/00000000';
    for (const key of [...leftovers, foreign]) await raw.put(key, randomBytes(1000));

    expect((await target.cleanupIncomplete({ olderThanMs: 3_600_000 })).removed).toEqual([]);
    const listed = await target.cleanupIncomplete({ olderThanMs: 0, dryRun: true });
    expect(listed.removed.map(({ kind, key, size }) => ({ kind, key, size }))).toEqual([
      { kind: 'segments', key: 'dead/one.bin', size: 2000 },
      { kind: 'segments', key: 'kept.bin', size: 1000 },
    ]);
    expect(listed.removed[1]?.location).toBe(
      `swift://${target.container}_segments/kept.bin/lz1abcde-0123456789ab/`,
    );
    expect((await segmentsLeft(target)).length).toBe(inUse.length + 4);
    const removed = await target.cleanupIncomplete({ olderThanMs: 0 });
    expect(removed.removed.map((item) => item.location)).toEqual(listed.removed.map((item) => item.location));
    expect(await segmentsLeft(target)).toEqual([...inUse, foreign].sort());
    expect((await sha256Of(await target.get('kept.bin'))).sha256).toBe(kept.sha256());
    expect((await target.cleanupIncomplete({ olderThanMs: 0, dryRun: true })).removed).toEqual([]);
  });
});

/** The raw manifest of an SLO (`?multipart-manifest=get`), read with a fresh TempAuth token. */
async function rawManifest(
  container: string,
  object: string,
): Promise<Array<{ name: string; sub_slo?: boolean }>> {
  const auth = await fetch(swift.authUrl, {
    headers: { 'X-Auth-User': swift.user, 'X-Auth-Key': swift.key },
  });
  const response = await fetch(`${swift.storageUrl}/${container}/${object}?multipart-manifest=get`, {
    headers: { 'X-Auth-Token': auth.headers.get('x-auth-token')! },
  });
  expect(response.status).toBe(200);
  return (await response.json()) as Array<{ name: string; sub_slo?: boolean }>;
}

function isSubManifestPut(input: RequestInfo | URL, init?: RequestInit): boolean {
  return isSegmentPut(input, init) && String(input).includes('multipart-manifest=put');
}

describe('SwiftStorage nested SLOs (sub-manifests of segmentsPerManifest segments)', () => {
  const cli = (...args: string[]) =>
    run('/usr/bin/swift', ['-A', swift.authUrl, '-U', swift.user, '-K', swift.key, ...args], {
      cwd: scratch,
      maxBuffer: 16 * MiB,
    });

  it('uploads 11 segments as 4 sub-manifests of 3 that read back whole, ranged and with `swift download`', async () => {
    const target = storage({ segmentSize: MiB, segmentsPerManifest: 3 });
    const total = 10 * MiB + 12_345;
    const { body, sha256 } = seededBody(total, 'nested', 300_000);
    const chunks: Uint8Array[] = [];
    async function* tee(): ByteStream {
      for await (const chunk of body) {
        chunks.push(chunk);
        yield chunk;
      }
    }
    const info = await target.put('nested/backup_20261121_101500.tar.gz', tee());
    const bytes = Buffer.concat(chunks);
    const digest = sha256();
    expect(info.size).toBe(total);
    const stat = await target.stat('nested/backup_20261121_101500.tar.gz');
    expect(stat?.size).toBe(total);
    expect(stat?.etag).toBe(info.etag);
    const left = await segmentsLeft(target);
    expect(left.filter((name) => /\/manifest-\d{6}$/.test(name)).map((name) => name.slice(-15))).toEqual([
      'manifest-000000',
      'manifest-000001',
      'manifest-000002',
      'manifest-000003',
    ]);
    expect(left.length).toBe(11 + 4);
    const top = await rawManifest(target.container, 'nested/backup_20261121_101500.tar.gz');
    expect(top.map((entry) => entry.sub_slo === true)).toEqual([true, true, true, true]);

    expect(await sha256Of(await target.get('nested/backup_20261121_101500.tar.gz'))).toEqual({
      sha256: digest,
      size: total,
    });
    const sliceOf = (start: number, end: number) =>
      createHash('sha256').update(bytes.subarray(start, end)).digest('hex');
    // Across the boundary of sub-manifests 0 and 1 (3 MiB), and across three sub-manifests.
    for (const [start, end] of [
      [3 * MiB - 5, 3 * MiB + 7],
      [MiB - 1, 9 * MiB + 3],
      [9 * MiB - 2, total],
    ] as const) {
      const slice = await sha256Of(
        await target.get('nested/backup_20261121_101500.tar.gz', { range: { start, end } }),
      );
      expect(slice).toEqual({ sha256: sliceOf(start, end), size: end - start });
    }

    const file = join(scratch, 'nested.bin');
    await cli('download', target.container, 'nested/backup_20261121_101500.tar.gz', '-o', file);
    expect((await sha256Of(createReadStream(file))).sha256).toBe(digest);

    await target.delete('nested/backup_20261121_101500.tar.gz');
    expect(await keys(target)).toEqual([]);
    expect(await segmentsLeft(target)).toEqual([]);
  });

  it('a failing segment PUT after a sub-manifest was written leaves no object, sub-manifest or segment', async () => {
    let subManifestsWritten = 0;
    let injected = false;
    const failing: typeof fetch = async (input, init) => {
      if (isSubManifestPut(input, init)) {
        const response = await fetch(input, init);
        if (response.status === 201) subManifestsWritten += 1;
        return response;
      }
      if (isSegmentPut(input, init) && subManifestsWritten > 0 && !injected) {
        injected = true;
        return new Response('injected', { status: 403 });
      }
      return fetch(input, init);
    };
    // One worker: segments go in order, so sub-manifest 0 is written once segment 3 is read,
    // and the segment PUT after it fails.
    const target = storage({ segmentSize: MiB, segmentsPerManifest: 3, fetch: failing, concurrency: 1 });
    const { body } = seededBody(10 * MiB, 'nested fails', 256 * 1024);
    expect(await code(target.put('nested-broken.bin', body))).toBe('BK_STORAGE');
    expect(injected).toBe(true);
    expect(subManifestsWritten).toBeGreaterThan(0);
    expect(await target.stat('nested-broken.bin')).toBeUndefined();
    expect(await keys(target)).toEqual([]);
    expect(await segmentsLeft(target)).toEqual([]);
  });

  it('overwriting a nested SLO deletes its sub-manifests and their segments', async () => {
    const target = storage({ segmentSize: MiB, segmentsPerManifest: 2 });
    await target.put('again.bin', seededBody(5 * MiB, 'nested first').body);
    expect((await segmentsLeft(target)).length).toBe(5 + 3);
    const second = seededBody(2 * MiB + 1, 'flat second');
    await target.put('again.bin', second.body);
    expect((await sha256Of(await target.get('again.bin'))).sha256).toBe(second.sha256());
    expect((await segmentsLeft(target)).length).toBe(3 + 2);
  });

  it('needs no bigger segment for 5 TiB and validates segmentsPerManifest', async () => {
    const target = storage();
    // A 5 TiB hint keeps 64 MiB segments (81,920 of them fit in 1,000 × 1,000), so a small body
    // still goes as one PUT without a larger buffer.
    const info = await target.put('hinted.bin', new TextEncoder().encode('small'), {
      sizeHint: 5 * 1024 ** 4,
    });
    expect(info.size).toBe(5);
    expect(await code(target.put('huge.bin', new Uint8Array(1), { sizeHint: 5 * 1024 ** 5 }))).toBe(
      'BK_CONFIG',
    );
    for (const segmentsPerManifest of [1, 1001, 2.5])
      expect(() => storage({ segmentsPerManifest })).toThrow(/segmentsPerManifest/);
  });
});

describe('SwiftStorage interoperates with the swift CLI', () => {
  const cli = (...args: string[]) =>
    run('/usr/bin/swift', ['-A', swift.authUrl, '-U', swift.user, '-K', swift.key, ...args], {
      cwd: scratch,
      maxBuffer: 16 * MiB,
    });

  it('an SLO written by SwiftStorage downloads intact with `swift download`', async () => {
    const target = storage({ segmentSize: 4 * MiB, prefix: 'nightly' });
    const { body, sha256 } = seededBody(25 * MiB + 17, 'to cli');
    await target.put('backup_20261121_101500.tar.gz', body);
    const file = join(scratch, 'downloaded.bin');
    await cli('download', target.container, 'nightly/backup_20261121_101500.tar.gz', '-o', file);
    expect((await sha256Of(createReadStream(file))).sha256).toBe(sha256());
    const { stdout } = await cli('stat', target.container, 'nightly/backup_20261121_101500.tar.gz');
    expect(stdout).toMatch(/Manifest|Static Large Object|X-Static-Large-Object/i);
  });

  it('an SLO uploaded with `swift upload --use-slo -S 10485760` reads intact, ranged too', async () => {
    const target = storage();
    const file = join(scratch, 'upload.bin');
    const { body, sha256 } = seededBody(25 * MiB + 5, 'from cli');
    const chunks: Uint8Array[] = [];
    for await (const chunk of body) chunks.push(chunk);
    const bytes = Buffer.concat(chunks);
    await writeFile(file, bytes);
    await cli(
      'upload',
      '--use-slo',
      '-S',
      '10485760',
      '--object-name',
      'from-cli.bin',
      target.container,
      file,
    );
    expect((await target.stat('from-cli.bin'))?.size).toBe(bytes.byteLength);
    expect(await sha256Of(await target.get('from-cli.bin'))).toEqual({
      sha256: sha256(),
      size: bytes.byteLength,
    });
    const start = 10 * MiB - 3;
    const slice = await sha256Of(await target.get('from-cli.bin', { range: { start, end: start + 10 } }));
    expect(slice.sha256).toBe(
      createHash('sha256')
        .update(bytes.subarray(start, start + 10))
        .digest('hex'),
    );
    await target.delete('from-cli.bin');
    expect(await keys(target)).toEqual([]);
    expect(await segmentsLeft(target)).toEqual([]);
  });
});

describe('SwiftStorage daily layout', () => {
  it('puts backups in one container per day and lists across them', async () => {
    const base = fresh('daily');
    const target = storage({ container: base, layout: 'daily', prefix: 'site-a' });
    expect(target.description).toBe(`swift://${base}/site-a?layout=daily`);
    await target.put('backup_20261121_101500.tar.gz', new TextEncoder().encode('archive'));
    await target.put('backup_20261121_101500.manifest.json', new TextEncoder().encode('{}'));
    await target.put('backup_20261122_000001.tar.gz', new TextEncoder().encode('next day'));
    await target.put('notes.txt', new TextEncoder().encode('not a backup'));
    const day1 = new SwiftStorage({ container: `${base}-2026-11-21`, auth: v1() });
    const day2 = new SwiftStorage({ container: `${base}-2026-11-22`, auth: v1() });
    expect(await keys(day1)).toEqual([
      'site-a/backup_20261121_101500.manifest.json',
      'site-a/backup_20261121_101500.tar.gz',
    ]);
    expect(await keys(day2)).toEqual(['site-a/backup_20261122_000001.tar.gz']);
    expect(await keys(new SwiftStorage({ container: base, auth: v1() }))).toEqual(['site-a/notes.txt']);
    expect(await keys(target)).toEqual([
      'backup_20261121_101500.manifest.json',
      'backup_20261121_101500.tar.gz',
      'backup_20261122_000001.tar.gz',
      'notes.txt',
    ]);
    expect(await keys(target, 'backup_20261122')).toEqual(['backup_20261122_000001.tar.gz']);
    expect((await sha256Of(await target.get('backup_20261122_000001.tar.gz'))).size).toBe(8);
    await target.delete('backup_20261121_101500.tar.gz');
    expect(await keys(day1)).toEqual(['site-a/backup_20261121_101500.manifest.json']);
  });
});

/** A Keystone v3 double, after the Identity API v3 docs: POST /v3/auth/tokens → X-Subject-Token + catalog. */
async function startKeystoneDouble(): Promise<{ url: string; requests: unknown[]; server: Server }> {
  const requests: unknown[] = [];
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', async () => {
      if (request.method !== 'POST' || request.url !== '/v3/auth/tokens') {
        response.writeHead(404).end();
        return;
      }
      const body = JSON.parse(Buffer.concat(chunks).toString()) as {
        auth: { identity: { password: { user: { name: string; password: string } } } };
      };
      requests.push(body);
      const user = body.auth.identity.password.user;
      if (user.name !== 'demo' || user.password !== 'secret') {
        response.writeHead(401, { 'Content-Type': 'application/json' }).end('{"error":{"code":401}}');
        return;
      }
      // The double hands out a real TempAuth token, so the real Swift accepts it.
      const auth = await fetch(swift.authUrl, {
        headers: { 'X-Auth-User': swift.user, 'X-Auth-Key': swift.key },
      });
      response.writeHead(201, {
        'Content-Type': 'application/json',
        'X-Subject-Token': auth.headers.get('x-auth-token')!,
      });
      response.end(
        JSON.stringify({
          token: {
            methods: ['password'],
            expires_at: new Date(Date.now() + 3_600_000).toISOString(),
            catalog: [
              {
                type: 'identity',
                name: 'keystone',
                endpoints: [{ interface: 'public', region: 'RegionOne', url: 'http://127.0.0.1:1/v3' }],
              },
              {
                type: 'object-store',
                name: 'swift',
                endpoints: [
                  { interface: 'internal', region: 'RegionOne', url: 'http://127.0.0.1:1/v1/AUTH_wrong' },
                  { interface: 'public', region: 'RegionTwo', url: 'http://127.0.0.1:1/v1/AUTH_wrong' },
                  { interface: 'public', region: 'RegionOne', region_id: 'RegionOne', url: swift.storageUrl },
                ],
              },
            ],
          },
        }),
      );
    });
  });
  const port = await listenOnFreePort(server);
  return { url: `http://127.0.0.1:${port}/v3`, requests, server };
}

describe('SwiftStorage authentication', () => {
  it('authenticates with Keystone v3 (a double) and picks the object-store endpoint by region and interface', async () => {
    const keystone = await startKeystoneDouble();
    try {
      const target = new SwiftStorage({
        container: fresh('ks'),
        auth: {
          kind: 'keystone-v3',
          authUrl: keystone.url,
          username: 'demo',
          password: 'secret',
          projectName: 'demo-project',
          region: 'RegionOne',
        },
      });
      await target.put('hello.txt', new TextEncoder().encode('hello keystone'));
      expect((await sha256Of(await target.get('hello.txt'))).size).toBe(14);
      expect(keystone.requests).toHaveLength(1);
      expect(keystone.requests[0]).toMatchObject({
        auth: {
          identity: {
            methods: ['password'],
            password: { user: { name: 'demo', domain: { name: 'Default' } } },
          },
          scope: { project: { name: 'demo-project', domain: { name: 'Default' } } },
        },
      });
      const wrong = new SwiftStorage({
        container: 'x',
        auth: {
          kind: 'keystone-v3',
          authUrl: keystone.url,
          username: 'demo',
          password: 'nope',
          projectName: 'p',
        },
      });
      const failure = await wrong.stat('a').catch((error: unknown) => error as Error);
      expect(BkError.isInstance(failure) && failure.code).toBe('BK_STORAGE');
      expect((failure as Error).message).not.toContain('nope');
    } finally {
      keystone.server.close();
    }
  });

  it('renews the token once on 401', async () => {
    let logins = 0;
    let rejected = false;
    const expiring: typeof fetch = async (input, init) => {
      if (String(input).endsWith('/auth/v1.0')) logins += 1;
      else if (!rejected && init?.method === 'HEAD') {
        rejected = true;
        return new Response(null, { status: 401 });
      }
      return fetch(input, init);
    };
    const target = storage({ fetch: expiring });
    expect(await target.stat('missing')).toBeUndefined();
    expect(logins).toBe(2);
  });

  it('storageFromUrl reads credentials from the environment and names what is missing', async () => {
    const env = { SWIFT_AUTH_URL: swift.authUrl, SWIFT_USER: swift.user, SWIFT_KEY: swift.key };
    const container = fresh('url');
    const target = storageFromUrl(new URL(`swift://${container}/a/b?layout=daily&segmentSize=8MiB`), env);
    expect(target.description).toBe(`swift://${container}/a/b?layout=daily`);
    await target.put('x.txt', new TextEncoder().encode('x'));
    expect(await keys(target)).toEqual(['x.txt']);
    expect(() =>
      storageFromUrl(new URL('swift://c/p'), { SWIFT_AUTH_URL: 'http://h/auth/v1.0', SWIFT_USER: 'u' }),
    ).toThrow(/SWIFT_KEY/);
    expect(() =>
      storageFromUrl(new URL('swift://c/p'), {
        OS_AUTH_URL: 'http://h/v3',
        OS_USERNAME: 'u',
        OS_PASSWORD: 'p',
      }),
    ).toThrow(/OS_PROJECT_NAME/);
    expect(() => storageFromUrl(new URL('swift://c/p'), {})).toThrow(/SWIFT_AUTH_URL/);
    expect(() => storageFromUrl(new URL('swift://c/p?bogus=1'), env)).toThrow(/bogus/);
    const keystone = storageFromUrl(new URL('swift://c'), {
      OS_AUTH_URL: 'http://h/v3',
      OS_USERNAME: 'u',
      OS_PASSWORD: 'p',
      OS_PROJECT_NAME: 'proj',
      OS_REGION_NAME: 'RegionOne',
    });
    expect(keystone.description).toBe('swift://c/');
  });
});
