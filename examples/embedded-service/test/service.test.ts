import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
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

it('starts with the documented command, node src/service.ts, and backs up on POST /backups', async () => {
  workspace = await mkdtemp(join(tmpdir(), 'bk-service-'));
  await writeFile(join(workspace, 'haproxy.cfg'), 'global\n');
  const child = spawn(process.execPath, ['src/service.ts'], {
    cwd: fileURLToPath(new URL('..', import.meta.url)),
    env: { ...process.env, BK_DIR: workspace, BK_TARGET: join(workspace, 'backups'), PORT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  try {
    const lines = createInterface({ input: child.stdout });
    let port: number | undefined;
    for await (const line of lines) {
      const record = JSON.parse(line) as { event?: string; address?: AddressInfo };
      if (record.event === 'listening') {
        port = record.address?.port;
        break;
      }
    }
    expect(port, stderr).toBeTypeOf('number');
    const made = (await (await fetch(`http://127.0.0.1:${port}/backups`, { method: 'POST' })).json()) as {
      name: string;
    };
    expect(made.name).toMatch(/^backup_/);
  } finally {
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await exited;
  }
});
