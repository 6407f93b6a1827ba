import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { files } from '@bk/files';
import { FsStorage } from '@bk/storage-fs';
import { afterEach, expect, it } from 'vitest';
import { BackupService } from '../src/service.ts';

let workspace: string;
afterEach(() => rm(workspace, { recursive: true, force: true }));

it('backs up over HTTP, lists and verifies, logging progress', async () => {
  workspace = await mkdtemp(join(tmpdir(), 'bk-service-'));
  await writeFile(join(workspace, 'haproxy.cfg'), 'global\n');
  const logs: Array<Record<string, unknown>> = [];
  const service = new BackupService({
    storage: new FsStorage({ root: join(workspace, 'backups') }),
    components: [files({ name: 'data', root: workspace, paths: ['haproxy.cfg'] })],
    log: (record) => logs.push(record),
  });
  const server = await service.listen(0);
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const made = (await (await fetch(`${base}/backups`, { method: 'POST' })).json()) as { name: string };
    expect(made.name).toMatch(/^backup_/);
    const listed = (await (await fetch(`${base}/backups`)).json()) as Array<{ name: string }>;
    expect(listed.map((backup) => backup.name)).toEqual([made.name]);
    const verified = (await (await fetch(`${base}/backups/latest/verify`, { method: 'POST' })).json()) as {
      entries: number;
    };
    expect(verified.entries).toBe(1);
    expect(logs.some((record) => record.event === 'backup-end')).toBe(true);
  } finally {
    server.close();
    await service.stop();
  }
});
