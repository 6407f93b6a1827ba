import { type SilentServer, startSilentServer } from '@bk/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, runBk } from './bk-process.ts';

// The CLI prints query values as *** (they may be credentials), so the 300 of requestTimeout=300
// shows as "*** ms"; the endpoint comes from the environment so that it is printed.

let silent: SilentServer;

beforeAll(async () => {
  assertBuilt();
  silent = await startSilentServer();
});
afterAll(async () => {
  await silent?.stop();
});

describe('an endpoint that accepts connections and never answers', () => {
  it('bk ls on s3:// fails with the storage exit code, naming the endpoint, instead of hanging', async () => {
    const started = Date.now();
    const run = await runBk(['ls', '--target', 's3://bucket/nightly?requestTimeout=300'], {
      env: { S3_REGION_ENDPOINT: silent.endpoint, S3_ACCESS_KEY: 'key', S3_SECRET_KEY: 'secret' },
    });
    expect(run.code, run.stderr).toBe(6);
    expect(run.stderr).toMatch(
      new RegExp(`${silent.endpoint} sent nothing for \\S+ ms \\(requestTimeout\\)`),
    );
    expect(Date.now() - started).toBeLessThan(20_000);
  }, 30_000);

  it('bk ls on swift:// fails with the storage exit code, naming the endpoint, instead of hanging', async () => {
    const started = Date.now();
    const run = await runBk(['ls', '--target', 'swift://backups/nightly?requestTimeout=300'], {
      env: { OS_STORAGE_URL: `${silent.endpoint}/v1/AUTH_test`, OS_AUTH_TOKEN: 'token' },
    });
    expect(run.code, run.stderr).toBe(6);
    expect(run.stderr).toMatch(
      new RegExp(`${silent.endpoint} sent nothing for \\S+ ms \\(requestTimeout\\)`),
    );
    expect(Date.now() - started).toBeLessThan(20_000);
  }, 30_000);
});
