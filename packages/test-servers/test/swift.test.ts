import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SwiftServer, startSwift } from '../src/index.ts';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('startSwift', () => {
  let swift: SwiftServer;
  beforeAll(async () => {
    swift = await startSwift();
  }, 130_000);
  afterAll(async () => {
    await swift?.stop();
  });

  it('stores and reads an object, then stops every server', async () => {
    const auth = await fetch(swift.authUrl, {
      headers: { 'X-Auth-User': swift.user, 'X-Auth-Key': swift.key },
    });
    expect(auth.status).toBe(200);
    const token = auth.headers.get('x-auth-token')!;
    expect(auth.headers.get('x-storage-url')).toBe(swift.storageUrl);
    const headers = { 'X-Auth-Token': token };
    expect((await fetch(`${swift.storageUrl}/c1`, { method: 'PUT', headers })).status).toBeLessThan(300);
    const put = await fetch(`${swift.storageUrl}/c1/hello.txt`, {
      method: 'PUT',
      headers,
      body: 'hello swift',
    });
    expect(put.status).toBe(201);
    const get = await fetch(`${swift.storageUrl}/c1/hello.txt`, { headers });
    expect(await get.text()).toBe('hello swift');

    expect(swift.pids).toHaveLength(5);
    expect(swift.pids.every(alive)).toBe(true);
    await swift.stop();
    expect(swift.pids.filter(alive)).toEqual([]);
  });
});
