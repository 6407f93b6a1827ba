import { randomBytes } from 'node:crypto';
import { type SwiftServer, startSwift } from '@bk/test-servers';
import { storageContract } from '@bk/test-suite';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { SwiftStorage } from '../src/index.ts';

let swift: SwiftServer;
beforeAll(async () => {
  swift = await startSwift();
}, 130_000);
afterAll(async () => {
  await swift?.stop();
});

function factory(segmentSize: number) {
  return async () => {
    const storage = new SwiftStorage({
      container: `contract-${randomBytes(4).toString('hex')}`,
      auth: { kind: 'v1', authUrl: swift.authUrl, user: swift.user, key: swift.key },
      segmentSize,
    });
    return { storage };
  };
}

// 2 MiB segments: the 8 MiB round trip, the failing body and the aborted put all take the SLO path.
describe('SwiftStorage meets the storage contract (SLO path)', () => {
  storageContract(it, factory(2 * 1024 * 1024), { timeout: 60_000 });
});

describe('SwiftStorage meets the storage contract (single PUT path)', () => {
  storageContract(it, factory(64 * 1024 * 1024), { timeout: 60_000 });
});
