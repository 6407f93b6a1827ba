// The archiver with credentials that may create objects but not read them, on every object
// store whose test server can refuse reads: the GCS double (create-only mode), Azurite (a SAS
// with create and write permissions only), Swift (a user whose container ACL grants writes only)
// and Swift's S3 API with that same user.

import { copyFile, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BkError, type Storage } from '@bk/core';
import { AzureStorage } from '@bk/storage-azure';
import { GcsStorage } from '@bk/storage-gcs';
import { S3Storage } from '@bk/storage-s3';
import { SwiftStorage } from '@bk/storage-swift';
import {
  type AzuriteServer,
  type GcsDouble,
  type SwiftServer,
  startAzurite,
  startGcsDouble,
  startSwift,
} from '@bk/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DrArchiver } from '../src/archiver/index.ts';
import { stored } from './archiver-kill.ts';

let sandbox: string;
let gcs: GcsDouble;
let azurite: AzuriteServer;
let swift: SwiftServer;

beforeAll(async () => {
  sandbox = await mkdtemp(join(tmpdir(), 'bk-dr-write-only-'));
  [gcs, azurite, swift] = await Promise.all([
    startGcsDouble({ crc32c: false }),
    startAzurite(),
    startSwift(),
  ]);
}, 180_000);

afterAll(async () => {
  await Promise.all([gcs?.stop(), azurite?.stop(), swift?.stop()]);
  if (sandbox !== undefined) await rm(sandbox, { recursive: true, force: true });
});

async function isDenied(attempt: Promise<unknown>): Promise<boolean> {
  try {
    await attempt;
    return false;
  } catch (error) {
    return BkError.isInstance(error) && /403|denied|forbidden/i.test(error.message);
  }
}

/**
 * Writes 600 lines through a spooled archiver on `writer`, keeping a copy of every segment as
 * it stood before upload; closes it; then puts the copies back (as if the process had died
 * between the uploads and the deletion) and runs a second archiver, which must finish too.
 * Returns the lines written.
 */
async function archiveWriteOnly(name: string, writer: Storage): Promise<string[]> {
  const spool = join(sandbox, name, 'spool');
  const kept = join(sandbox, name, 'kept');
  await mkdir(kept, { recursive: true });
  const archiver = new DrArchiver({
    storage: writer,
    instance: 'wo',
    spool: { dir: spool },
    maxFileBytes: 8_000,
    retryBaseMs: 5,
    retryMaxMs: 20,
  });
  const written: string[] = [];
  for (let batch = 0; batch < 30; batch += 1) {
    const lines = Array.from({ length: 20 }, (_, index) => `m,b=${batch} v=${index}i ${batch * 100 + index}`);
    written.push(...lines);
    await archiver.write(batch % 2 === 0 ? 'db' : 'other', 'rp', lines);
    // Keep each segment as it is before its upload.
    for (const segment of (await readdir(spool)).filter((file) => file.endsWith('.spool')))
      await copyFile(join(spool, segment), join(kept, segment)).catch(() => {});
  }
  await archiver.close();
  expect(archiver.stats()).toMatchObject({ linesUploaded: written.length, retries: 0, spooledBytes: 0 });

  const segments = await readdir(kept);
  expect(segments.length).toBeGreaterThan(1);
  for (const segment of segments) await copyFile(join(kept, segment), join(spool, segment));
  const again = new DrArchiver({ storage: writer, instance: 'wo', spool: { dir: spool }, retryBaseMs: 5 });
  await again.close();
  expect(again.stats().retries).toBe(0);
  expect((await readdir(spool)).filter((file) => file.endsWith('.spool'))).toEqual([]);
  return written;
}

async function expectStoredOnce(reader: Storage, written: string[]): Promise<void> {
  const lines = (await stored(reader, 'wo')).map(({ line }) => line).sort();
  expect(lines).toEqual([...written].sort());
}

describe('DrArchiver with credentials that may write but not read', () => {
  it('GCS: the double refusing reads, lists, deletes and replacements', async () => {
    const storage = new GcsStorage({ bucket: 'dr-copies', apiEndpoint: gcs.url, projectId: 'bk-test' });
    gcs.writeOnly = true;
    let written: string[];
    try {
      expect(await isDenied(storage.stat('wo/anything'))).toBe(true);
      written = await archiveWriteOnly('gcs', storage);
    } finally {
      gcs.writeOnly = false;
    }
    await expectStoredOnce(storage, written);
  });

  it('Azure: Azurite with a SAS that may create and write blobs (cw), not read or list them', async () => {
    // The SDK is @bk/storage-azure's dependency, not this package's.
    const sdk = createRequire(fileURLToPath(new URL('../../storage-azure/package.json', import.meta.url)))(
      '@azure/storage-blob',
    ) as typeof import('@azure/storage-blob');
    const container = 'dr-copies';
    const admin = new AzureStorage({
      container,
      connectionString: azurite.connectionString,
      createContainer: true,
    });
    await admin.put('created', new Uint8Array(0));
    const sas = sdk
      .generateBlobSASQueryParameters(
        {
          containerName: container,
          permissions: sdk.ContainerSASPermissions.parse('cw'),
          expiresOn: new Date(Date.now() + 3_600_000),
        },
        new sdk.StorageSharedKeyCredential(azurite.accountName, azurite.accountKey),
      )
      .toString();
    const client = new sdk.ContainerClient(`${azurite.blobEndpoint}/${container}?${sas}`);
    const writer = new AzureStorage({ container, client });
    expect(await isDenied(writer.stat('created'))).toBe(true);
    const written = await archiveWriteOnly('azure', writer);
    await expectStoredOnce(admin, written);
  });

  it('Swift and its S3 API: a user whose container ACL grants writes only', async () => {
    const auth = { kind: 'v1' as const, authUrl: swift.authUrl, user: swift.user, key: swift.key };
    const limited = { kind: 'v1' as const, authUrl: swift.authUrl, ...swift.limitedUser };
    for (const [index, via] of (['swift', 's3'] as const).entries()) {
      const container = `dr-copies-${index}`;
      const admin = new SwiftStorage({ container, auth });
      await admin.put('created', new Uint8Array(0));
      const login = await fetch(swift.authUrl, {
        headers: { 'X-Auth-User': swift.user, 'X-Auth-Key': swift.key },
      });
      const token = login.headers.get('x-auth-token') as string;
      const acl = await fetch(`${swift.storageUrl}/${container}`, {
        method: 'POST',
        headers: { 'X-Auth-Token': token, 'X-Container-Write': swift.limitedUser.user },
      });
      expect(acl.status).toBe(204);
      const writer: Storage =
        via === 'swift'
          ? new SwiftStorage({ container, auth: limited })
          : new S3Storage({
              bucket: container,
              endpoint: swift.s3.endpoint,
              region: swift.s3.region,
              credentials: { accessKeyId: swift.limitedUser.user, secretAccessKey: swift.limitedUser.key },
            });
      expect(await isDenied(writer.stat('created')), via).toBe(true);
      const written = await archiveWriteOnly(`swift-${via}`, writer);
      await expectStoredOnce(admin, written);
    }
  });
});
