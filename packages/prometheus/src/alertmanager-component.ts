import { mkdir } from 'node:fs/promises';
import { basename } from 'node:path';
import {
  type BackupContext,
  type Component,
  ComponentError,
  type ComponentInfo,
  ConfigError,
  ConflictError,
  checkComponentName,
  checkNestedConfig,
  collect,
  type Entry,
  fromBytes,
  isRecord,
  type OperationContext,
  type RestoreContext,
  type RestoreReport,
  safeEntryPath,
  throwIfAborted,
  UnsafePathError,
} from '@bk/core';
import {
  CONFIG_PREFIX,
  type ConfigFile,
  ConfigFilesRestore,
  configEntry,
  configSecrets,
  readable,
} from './config-files.ts';
import { checkAbsolutePath, checkHeaders, checkTimeout, HttpApi } from './http-api.ts';
import { parseSilences, planSilences, type Silence } from './silences.ts';
import { StagingArea } from './staging-area.ts';

/**
 * Options of an {@link AlertmanagerComponent}.
 *
 * @example
 * const options: AlertmanagerOptions = {
 *   url: 'http://127.0.0.1:9093',
 *   configFile: '/etc/prometheus/alertmanager.yml',
 *   restore: { configDir: '/srv/alertmanager-restored' },
 * };
 */
export interface AlertmanagerOptions {
  /** The component's name, unique within one backup; default `alertmanager`. */
  name?: string;
  /** Base URL of the server, e.g. `http://127.0.0.1:9093`; silences are read from and restored to it. */
  url: string;
  /** Extra request headers (e.g. `Authorization`); never logged or recorded. */
  headers?: Record<string, string>;
  /** Timeout of each API request, in ms; default 30 000. */
  timeoutMs?: number;
  /**
   * The config file to back up. When it is not set or not readable, `config.original` from
   * `/api/v2/status` is stored (secrets in it are masked as `<secret>` by Alertmanager).
   */
  configFile?: string;
  /**
   * `configDir`: absolute directory the config is restored into (created when missing). Without
   * it the config is not restored (counted as skipped); silences always are.
   */
  restore?: { configDir?: string };
}

/** Fields of an Alertmanager config entry for the `bk` CLI (`"kind": "prometheus", "service": "alertmanager"`). */
export const ALERTMANAGER_CONFIG_FIELDS = [
  'kind',
  'service',
  'name',
  'url',
  'headers',
  'timeoutMs',
  'configFile',
  'restore',
];
const RESTORE_FIELDS = ['configDir'];

/** The entry holding every silence as `GET /api/v2/silences` returned it. */
export const SILENCES_ENTRY = 'silences.json';

/** Largest `silences.json` read back on restore. */
const SILENCES_LIMIT = 64 * 1024 * 1024;

const NOT_CAPTURED = [
  'alerts (they are re-sent by Prometheus) and the notification log (nflog): a restored Alertmanager may notify again for alerts that are still firing',
  'silence IDs and update times: restored silences get new IDs; an active silence’s startsAt becomes the time of the restore (Alertmanager moves a past start to now)',
  'template files, TLS certificates and password files the config refers to, and the --web.config.file',
  'cluster (gossip) membership and peers',
];

interface AlertmanagerStatus {
  cluster?: { status?: unknown };
  config?: { original?: unknown };
  versionInfo?: { version?: unknown };
}

/**
 * Backs up an Alertmanager through API v2: its configuration (the config file, or
 * `config.original` from `/api/v2/status`) as `config/<name>` and every silence as
 * `silences.json`. Restore re-creates the silences that are still active or pending (expired
 * ones are skipped, as are those the target already has), and writes the config into a config
 * dir, never over the live one unless asked.
 *
 * @example
 * import { backup } from '@bk/core';
 * import { alertmanager } from '@bk/prometheus';
 *
 * await backup({ storage, components: [alertmanager({ url: 'http://127.0.0.1:9093' })] });
 */
export class AlertmanagerComponent implements Component {
  readonly kind = 'alertmanager' as const;
  readonly name: string;
  readonly options: Readonly<AlertmanagerOptions>;
  readonly #api: HttpApi;

  /**
   * Validates the options; sends no request.
   *
   * @throws {ConfigError} naming the invalid option.
   */
  constructor(options: AlertmanagerOptions) {
    if (!isRecord(options)) throw new ConfigError('alertmanager component: the options must be an object.');
    const name = options.name ?? 'alertmanager';
    if (typeof name !== 'string') throw new ConfigError('alertmanager component: "name" must be a string.');
    checkComponentName(name);
    const where = `alertmanager component "${name}"`;
    const headers = checkHeaders(options.headers, where);
    const timeoutMs = checkTimeout(options.timeoutMs, 'timeoutMs', where, 30_000);
    checkAbsolutePath(options.configFile, 'configFile', where);
    const restore = options.restore;
    if (restore !== undefined) {
      checkNestedConfig(restore, 'restore', RESTORE_FIELDS, where);
      checkAbsolutePath(restore.configDir, 'restore.configDir', where);
    }
    this.#api = new HttpApi(name, options.url, headers, timeoutMs);
    this.name = name;
    this.options = { ...options, name };
  }

  async #config(status: AlertmanagerStatus): Promise<ConfigFile> {
    const file = this.options.configFile;
    if (file !== undefined && (await readable(file)))
      return { path: basename(file), source: file, role: 'config' };
    const original = status.config?.original;
    if (typeof original !== 'string')
      throw new ComponentError(this.name, '/api/v2/status holds no config.original.');
    return { path: file === undefined ? 'alertmanager.yml' : basename(file), text: original, role: 'config' };
  }

  async #silences(signal: AbortSignal): Promise<Silence[]> {
    return parseSilences(await this.#api.json<unknown>('GET', '/api/v2/silences', { signal }), this.name);
  }

  /**
   * Reads the version and cluster status (`/api/v2/status`) and counts the silences by state.
   *
   * @throws {ComponentError} when the server does not answer.
   */
  async describe(context: OperationContext): Promise<ComponentInfo> {
    throwIfAborted(context.signal);
    const status = await this.#api.json<AlertmanagerStatus>('GET', '/api/v2/status', {
      signal: context.signal,
    });
    const config = await this.#config(status);
    const silences = await this.#silences(context.signal);
    const states: Record<string, number> = {};
    for (const silence of silences) {
      const state = silence.status?.state ?? 'unknown';
      states[state] = (states[state] ?? 0) + 1;
    }
    const notCaptured = [...NOT_CAPTURED];
    if (config.source === undefined) {
      notCaptured.push(
        'the config file itself (not readable here): config.original from /api/v2/status is stored instead, with secrets masked as <secret>',
      );
    }
    return {
      version: typeof status.versionInfo?.version === 'string' ? status.versionInfo.version : 'unknown',
      capabilities: {
        incremental: false,
        pointInTime: false,
        consistentSnapshot: false,
        restoreIntoExisting: true,
        selectiveRestore: false,
      },
      notCaptured,
      secrets: {
        captured: await configSecrets([config], 'Alertmanager'),
        notCaptured: [
          {
            kind: 'credentials',
            what: 'files the config points at (smtp_auth_password_file, *_file, TLS key_file): outside the backup',
          },
          ...(config.source === undefined
            ? [
                {
                  kind: 'credentials' as const,
                  what: 'receiver secrets in the config: the API masks them as <secret>',
                },
              ]
            : []),
        ],
      },
      details: {
        format: 'Alertmanager API v2: config + silences.json',
        url: this.#api.url,
        cluster: typeof status.cluster?.status === 'string' ? status.cluster.status : null,
        configFrom: config.source === undefined ? 'api' : 'file',
        configEntry: `${CONFIG_PREFIX}${config.path}`,
        silences: states,
      },
    };
  }

  /** `config/<name>` (read whole), then `silences.json`: every silence, in every state, sorted by id. */
  async *backup(context: BackupContext): AsyncIterable<Entry> {
    const status = await this.#api.json<AlertmanagerStatus>('GET', '/api/v2/status', {
      signal: context.signal,
    });
    yield await configEntry(await this.#config(status), this.name);
    throwIfAborted(context.signal);
    const silences = (await this.#silences(context.signal)).sort((a, b) =>
      (a.id ?? '') < (b.id ?? '') ? -1 : 1,
    );
    const bytes = Buffer.from(`${JSON.stringify(silences, null, 2)}\n`);
    yield { path: SILENCES_ENTRY, type: 'file', size: bytes.byteLength, mode: 0o600, body: fromBytes(bytes) };
  }

  /**
   * Re-creates the backed-up silences that are active or pending and whose `endsAt` has not
   * passed (without `id`, `status`, `updatedAt`: they get new IDs). A silence equal to one the
   * target already has (active or pending; see `isSameSilence`) is not created again: with
   * `fail` that is a `ConflictError` before anything is created, with `skip` or `overwrite` it
   * is kept as it is. The config goes to `restore.configDir` (staged and renamed into place;
   * existing file: `fail` → `ConflictError`, `skip` → kept, `overwrite` → replaced).
   */
  async restore(entries: AsyncIterable<Entry>, context: RestoreContext): Promise<RestoreReport> {
    const configDir = this.options.restore?.configDir;
    if (configDir !== undefined) await mkdir(configDir, { recursive: true });
    const staging = configDir === undefined ? undefined : new StagingArea(configDir);
    const configFiles = staging === undefined ? undefined : new ConfigFilesRestore(staging, context.conflict);
    const configWithoutTarget: string[] = [];
    let backedUp: Silence[] | undefined;
    let count = 0;
    let bytes = 0;
    try {
      for await (const entry of entries) {
        throwIfAborted(context.signal);
        count += 1;
        const path = safeEntryPath(entry.path);
        if (path !== entry.path) throw new UnsafePathError(entry.path, 'the path is not in normal form');
        if (path === SILENCES_ENTRY) {
          const body = await collect(entry.body ?? fromBytes(new Uint8Array()), SILENCES_LIMIT);
          bytes += body.byteLength;
          let parsed: unknown;
          try {
            parsed = JSON.parse(Buffer.from(body).toString('utf8'));
          } catch (error) {
            throw new ComponentError(this.name, 'silences.json is not JSON.', { cause: error });
          }
          backedUp = parseSilences(parsed, this.name);
        } else if (path.startsWith(CONFIG_PREFIX)) {
          const relativePath = path.slice(CONFIG_PREFIX.length);
          if (configFiles) {
            bytes += await configFiles.add(relativePath, entry, context.signal);
          } else {
            for await (const _ of entry.body ?? []) {
              // Read so core checks it; there is no config dir to write it to.
            }
            configWithoutTarget.push(relativePath);
          }
        } else {
          throw new ComponentError(this.name, `unexpected entry "${path}".`);
        }
      }
      throwIfAborted(context.signal);
      const now = Date.now();
      const plan = planSilences(backedUp ?? [], await this.#silences(context.signal), now);
      if (context.conflict === 'fail' && plan.existing.length > 0) {
        const first = plan.existing[0]!;
        throw new ConflictError(
          `silence ${first.id ?? ''}`.trim(),
          `${plan.existing.length} silence(s) of the backup already exist on ${this.#api.url} (e.g. "${first.comment}", created by ${first.createdBy}); restore with conflict "skip" to keep them and create only the missing ones.`,
        );
      }
      await configFiles?.check();
      const created: string[] = [];
      for (const silence of plan.create) {
        throwIfAborted(context.signal);
        const answer = await this.#api.json<{ silenceID?: unknown }>('POST', '/api/v2/silences', {
          body: silence,
          signal: context.signal,
        });
        if (typeof answer.silenceID === 'string') created.push(answer.silenceID);
      }
      const configPublished = (await configFiles?.publish()) ?? [];
      const skippedConfig = configFiles?.skipped ?? [];
      return {
        entries: count,
        bytes,
        skipped:
          plan.expired.length + plan.existing.length + skippedConfig.length + configWithoutTarget.length,
        details: {
          silences: {
            inBackup: backedUp?.length ?? 0,
            created: plan.create.length,
            skippedExpired: plan.expired.length,
            skippedExisting: plan.existing.length,
            newIds: created,
          },
          configDir: configDir ?? null,
          configFiles: configPublished,
          skippedConfigFiles: skippedConfig,
          configFilesWithoutTarget: configWithoutTarget,
        },
      };
    } finally {
      await staging?.dispose();
    }
  }
}

/** Same as `new AlertmanagerComponent(options)`. */
export function alertmanager(options: AlertmanagerOptions): AlertmanagerComponent {
  return new AlertmanagerComponent(options);
}
