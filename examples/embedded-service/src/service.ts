/**
 * Starter: embed the bk runners in a service.
 *
 * - backs up on a schedule and on `POST /backups`, one run at a time;
 * - `GET /backups` lists complete backups, `POST /backups/latest/verify` re-reads the newest;
 * - forwards progress events to structured (JSON) logs, never logging credentials;
 * - prunes after each backup; on SIGTERM aborts a running backup, which removes its partial
 *   objects, and exits.
 *
 *   BK_DIR=/etc/haproxy BK_TARGET=/var/backups/bk BK_INTERVAL_MINUTES=60 PORT=8080 node src/service.ts
 */
import { createServer, type Server } from 'node:http';
import {
  BkError,
  backup,
  list,
  type ProgressEvent,
  prune,
  type Source,
  type Storage,
  verify,
} from '@bk/core';
import { files } from '@bk/files';
import { FsStorage } from '@bk/storage-fs';

export interface BackupServiceOptions {
  storage: Storage;
  components: Source[];
  intervalMinutes?: number;
  keepLast?: number;
  log?: (record: Record<string, unknown>) => void;
}

/** Runs backups for a service: serialised, logged, abortable. */
export class BackupService {
  private running: Promise<unknown> | undefined;
  private readonly shutdown = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private readonly log: (record: Record<string, unknown>) => void;
  // A plain field, not a constructor parameter property: `node src/service.ts` strips types
  // only, and parameter properties are not erasable syntax.
  private readonly options: BackupServiceOptions;

  constructor(options: BackupServiceOptions) {
    this.options = options;
    this.log =
      options.log ?? ((record) => console.log(JSON.stringify({ time: new Date().toISOString(), ...record })));
  }

  start(): void {
    const minutes = this.options.intervalMinutes;
    if (minutes) this.timer = setInterval(() => void this.runBackup().catch(() => {}), minutes * 60_000);
  }

  /** Runs one backup now, or joins the one already running. */
  runBackup(): Promise<unknown> {
    this.running ??= (async () => {
      const onProgress = (event: ProgressEvent) => {
        if (event.type !== 'bytes' && event.type !== 'archive-bytes' && event.type !== 'entry-start')
          this.log({ event: event.type, ...event });
      };
      try {
        const result = await backup({
          storage: this.options.storage,
          components: this.options.components,
          onProgress,
          signal: this.shutdown.signal,
        });
        const pruned = await prune({ storage: this.options.storage, keepLast: this.options.keepLast ?? 7 });
        this.log({ event: 'pruned', deleted: pruned.deleted });
        return { name: result.name, size: result.size, sha256: result.sha256 };
      } catch (error) {
        this.log({
          event: 'backup-failed',
          code: BkError.isInstance(error) ? error.code : 'UNEXPECTED',
          message: (error as Error).message,
        });
        throw error;
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.shutdown.abort(new Error('service shutting down'));
    await this.running?.catch(() => {});
  }

  /** The HTTP API: GET /backups, POST /backups, POST /backups/latest/verify. */
  listen(port: number, host = '127.0.0.1'): Promise<Server> {
    const server = createServer((request, response) => {
      const reply = (status: number, body: unknown) => {
        response.writeHead(status, { 'content-type': 'application/json' });
        response.end(JSON.stringify(body));
      };
      const route = `${request.method} ${request.url}`;
      const work =
        route === 'GET /backups'
          ? list({ storage: this.options.storage }).then((backups) =>
              backups.map(({ name, size }) => ({ name, size })),
            )
          : route === 'POST /backups'
            ? this.runBackup()
            : route === 'POST /backups/latest/verify'
              ? verify({ storage: this.options.storage, name: 'latest' }).then(
                  ({ name, entries, bytes }) => ({ name, entries, bytes }),
                )
              : undefined;
      if (!work) return reply(404, { error: 'not found' });
      work.then(
        (body) => reply(200, body),
        (error: unknown) =>
          reply(BkError.isInstance(error) && error.code === 'BK_NOT_FOUND' ? 404 : 500, {
            error: (error as Error).message,
          }),
      );
    });
    return new Promise((resolve) => server.listen(port, host, () => resolve(server)));
  }
}

if (process.argv[1] === import.meta.filename) {
  const directory = process.env.BK_DIR ?? process.cwd();
  const service = new BackupService({
    storage: new FsStorage({ root: process.env.BK_TARGET ?? `${process.cwd()}/backups` }),
    components: [files({ name: 'data', root: directory, paths: ['.'] })],
    intervalMinutes: Number(process.env.BK_INTERVAL_MINUTES ?? 60),
  });
  service.start();
  const server = await service.listen(Number(process.env.PORT ?? 8080));
  const address = server.address();
  console.log(JSON.stringify({ event: 'listening', address }));
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, async () => {
      server.close();
      await service.stop();
      process.exit(0);
    });
  }
}
