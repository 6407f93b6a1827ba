import { createReadStream } from 'node:fs';
import { lstat, mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join } from 'node:path';
import {
  type BackupContext,
  type ByteStream,
  type Component,
  ComponentError,
  type ComponentInfo,
  ConfigError,
  ConflictError,
  checkComponentName,
  checkNestedConfig,
  type Entry,
  isRecord,
  type OperationContext,
  type PreflightContext,
  type PreflightResult,
  type RestoreContext,
  type RestoreReport,
  refuseOtherMajor,
  runCommand,
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
  expandRuleFiles,
  layoutConfigFiles,
  readable,
} from './config-files.ts';
import { checkAbsolutePath, checkHeaders, checkTimeout, HttpApi } from './http-api.ts';
import { pathExists, StagingArea } from './staging-area.ts';

/** Where a Prometheus backup is restored. */
export interface PrometheusRestoreOptions {
  /**
   * Absolute data dir the TSDB blocks are written into (created when missing). Restore into a
   * stopped Prometheus' data dir or a new one: a running server does not load new blocks at once.
   */
  dataDir: string;
  /**
   * Absolute directory the config and rule files are written into (created when missing).
   * Without it they are not restored (counted as skipped). Point it at a new directory rather
   * than the live config: an existing file is only replaced with conflict `overwrite`.
   */
  configDir?: string;
}

/**
 * Options of a {@link PrometheusComponent}.
 *
 * @example
 * const options: PrometheusOptions = {
 *   url: 'http://127.0.0.1:9090',
 *   dataDir: '/var/lib/prometheus/metrics2',
 *   configFile: '/etc/prometheus/prometheus.yml',
 *   ruleFiles: ['/etc/prometheus/rules/*.yml'],
 *   restore: { dataDir: '/srv/prometheus-restored/data', configDir: '/srv/prometheus-restored/config' },
 * };
 */
export interface PrometheusOptions {
  /** The component's name, unique within one backup; default `prometheus`. */
  name?: string;
  /** Base URL of the server, e.g. `http://127.0.0.1:9090` (started with `--web.enable-admin-api`). */
  url: string;
  /** Extra request headers (e.g. `Authorization`); never logged or recorded. */
  headers?: Record<string, string>;
  /** Timeout of each API request but the snapshot, in ms; default 30 000. */
  timeoutMs?: number;
  /** Timeout of the snapshot request, in ms; default 600 000. */
  snapshotTimeoutMs?: number;
  /**
   * The server's data dir (`--storage.tsdb.path`) as this process sees it: the snapshot is made
   * there by the server and streamed from there by bk. Default: the `storage.tsdb.path` flag read
   * from `/api/v1/status/flags`, which only works when bk runs on the same machine (or mount).
   */
  dataDir?: string;
  /** Leave out the in-memory head block (the most recent ~2 h of samples); default false. */
  skipHead?: boolean;
  /**
   * The config file to back up. Default: the `config.file` flag when it is an absolute path this
   * process can read. When no file is readable, the YAML from `/api/v1/status/config` is stored
   * (secrets in it are masked as `<secret>` by Prometheus).
   */
  configFile?: string;
  /**
   * Rule files: absolute paths or globs, or paths relative to the config file's directory.
   * Default: the files of the rule groups the server reports at `/api/v1/rules` that this
   * process can read. `[]` backs up none.
   */
  ruleFiles?: string[];
  /** Needed to restore. */
  restore?: PrometheusRestoreOptions;
}

/** Fields of a `prometheus` config entry for the `bk` CLI. */
export const PROMETHEUS_CONFIG_FIELDS = [
  'kind',
  'service',
  'name',
  'url',
  'headers',
  'timeoutMs',
  'snapshotTimeoutMs',
  'dataDir',
  'skipHead',
  'configFile',
  'ruleFiles',
  'restore',
];
const RESTORE_FIELDS = ['dataDir', 'configDir'];

/** The entry prefix of the TSDB blocks. */
export const TSDB_PREFIX = 'tsdb/';

const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/;
const SNAPSHOT_NAME = /^[0-9A-Za-z_-]+$/;

const NOT_CAPTURED = [
  'the write-ahead log as such: samples in memory are captured as the head block of the snapshot (unless skipHead), samples appended after the snapshot are not',
  'exemplars and the in-memory state of alerts (firing/pending); the ALERTS series themselves are in the TSDB',
  'files the config refers to other than rule files: file_sd targets, TLS certificates, password and token files, the --web.config.file',
  'remote-write queues and the server’s command-line flags (recorded in the manifest details only as the data dir and retention)',
];

interface Plan {
  version: string;
  dataDir: string;
  dataDirFrom: 'option' | 'flags';
  files: ConfigFile[];
  configFrom: 'file' | 'api';
  unreadableRuleFiles: string[];
  retention: string | undefined;
}

interface RuleGroups {
  groups?: { file?: unknown }[];
}

async function* walk(
  dir: string,
  prefix: string,
): AsyncGenerator<{ path: string; absolute: string; directory: boolean }> {
  const children = (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1));
  for (const child of children) {
    const absolute = join(dir, child.name);
    const path = `${prefix}${child.name}`;
    if (child.isDirectory()) {
      yield { path, absolute, directory: true };
      yield* walk(absolute, `${path}/`);
    } else if (child.isFile()) {
      yield { path, absolute, directory: false };
    }
  }
}

async function drain(entry: Entry): Promise<void> {
  for await (const _ of entry.body ?? []) {
    // Read so core checks it; not written.
  }
}

/**
 * Backs up a Prometheus server: the TSDB through an admin-API snapshot
 * (`POST /api/v1/admin/tsdb/snapshot`), streamed out of the data dir as `tsdb/<ULID>/…` and
 * deleted from it afterwards (also on failure or abort), plus the config file and rule files as
 * `config/…`. Restore writes the blocks into a data dir (each block staged under a temp name and
 * renamed into place) and the files into a config dir.
 *
 * @example
 * import { backup } from '@bk/core';
 * import { prometheus } from '@bk/prometheus';
 *
 * await backup({ storage, components: [prometheus({ url: 'http://127.0.0.1:9090' })] });
 */
export class PrometheusComponent implements Component {
  readonly kind = 'prometheus' as const;
  readonly name: string;
  readonly options: Readonly<PrometheusOptions>;
  readonly #api: HttpApi;
  readonly #snapshotTimeoutMs: number;
  #plan: Plan | undefined;

  /**
   * Validates the options; sends no request.
   *
   * @throws {ConfigError} naming the invalid option.
   */
  constructor(options: PrometheusOptions) {
    if (!isRecord(options)) throw new ConfigError('prometheus component: the options must be an object.');
    const name = options.name ?? 'prometheus';
    if (typeof name !== 'string') throw new ConfigError(`prometheus component: "name" must be a string.`);
    checkComponentName(name);
    const where = `prometheus component "${name}"`;
    const headers = checkHeaders(options.headers, where);
    const timeoutMs = checkTimeout(options.timeoutMs, 'timeoutMs', where, 30_000);
    this.#snapshotTimeoutMs = checkTimeout(options.snapshotTimeoutMs, 'snapshotTimeoutMs', where, 600_000);
    checkAbsolutePath(options.dataDir, 'dataDir', where);
    checkAbsolutePath(options.configFile, 'configFile', where);
    if (options.skipHead !== undefined && typeof options.skipHead !== 'boolean') {
      throw new ConfigError(`${where}: "skipHead" must be true or false.`);
    }
    if (
      options.ruleFiles !== undefined &&
      (!Array.isArray(options.ruleFiles) ||
        !options.ruleFiles.every((file) => typeof file === 'string' && file !== ''))
    ) {
      throw new ConfigError(`${where}: "ruleFiles" must be an array of paths or globs.`);
    }
    if (options.ruleFiles?.some((file) => !isAbsolute(file)) && options.configFile === undefined) {
      throw new ConfigError(
        `${where}: relative "ruleFiles" need "configFile" (they resolve against its directory).`,
      );
    }
    const restore = options.restore;
    if (restore !== undefined) {
      checkNestedConfig(restore, 'restore', RESTORE_FIELDS, where);
      checkAbsolutePath(restore.dataDir, 'restore.dataDir', where, true);
      checkAbsolutePath(restore.configDir, 'restore.configDir', where);
    }
    this.#api = new HttpApi(name, options.url, headers, timeoutMs);
    this.name = name;
    this.options = { ...options, name };
  }

  async #makePlan(signal: AbortSignal): Promise<Plan> {
    const where = `prometheus component "${this.name}"`;
    const [buildinfo, flags] = await Promise.all([
      this.#api.data<{ version?: unknown }>('GET', '/api/v1/status/buildinfo', { signal }),
      this.#api.data<Record<string, unknown>>('GET', '/api/v1/status/flags', { signal }),
    ]);
    if (flags['web.enable-admin-api'] === 'false') {
      throw new ConfigError(
        `${where}: the server's admin API is disabled; start Prometheus with --web.enable-admin-api.`,
      );
    }
    const flagPath = typeof flags['storage.tsdb.path'] === 'string' ? flags['storage.tsdb.path'] : undefined;
    const dataDir = this.options.dataDir ?? flagPath;
    if (dataDir === undefined || !isAbsolute(dataDir)) {
      throw new ConfigError(
        `${where}: the server's data dir is ${flagPath === undefined ? 'unknown' : `"${flagPath}" (relative to the server's working dir)`}; set "dataDir" to the absolute path where this process sees it.`,
      );
    }
    const dataInfo = await stat(dataDir).catch(() => undefined);
    if (!dataInfo?.isDirectory()) {
      throw new ConfigError(
        `${where}: the data dir "${dataDir}" is not visible to this process; bk streams the snapshot out of it, so run bk where the data dir is mounted and set "dataDir" to that path.`,
      );
    }
    // Config file: the option, else the server's flag when this process can read it, else the API's YAML.
    const flagConfig = typeof flags['config.file'] === 'string' ? flags['config.file'] : undefined;
    const configPath =
      this.options.configFile ??
      (flagConfig !== undefined && isAbsolute(flagConfig) ? flagConfig : undefined);
    let config: ConfigFile;
    let configFrom: Plan['configFrom'];
    if (configPath !== undefined && (await readable(configPath))) {
      config = { path: basename(configPath), source: configPath, role: 'config' };
      configFrom = 'file';
    } else {
      const { yaml } = await this.#api.data<{ yaml?: unknown }>('GET', '/api/v1/status/config', { signal });
      if (typeof yaml !== 'string')
        throw new ComponentError(this.name, '/api/v1/status/config returned no YAML.');
      config = {
        path: configPath === undefined ? 'prometheus.yml' : basename(configPath),
        text: yaml,
        role: 'config',
      };
      configFrom = 'api';
    }
    const base = configPath === undefined ? undefined : dirname(configPath);
    let ruleFiles: string[];
    const unreadableRuleFiles: string[] = [];
    if (this.options.ruleFiles !== undefined) {
      ruleFiles = await expandRuleFiles(this.options.ruleFiles, base, where);
    } else {
      const { groups } = await this.#api.data<RuleGroups>('GET', '/api/v1/rules', { signal });
      const files = new Set<string>();
      for (const group of groups ?? []) if (typeof group.file === 'string') files.add(group.file);
      ruleFiles = [];
      for (const file of [...files].sort()) {
        if (isAbsolute(file) && (await readable(file))) ruleFiles.push(file);
        else unreadableRuleFiles.push(file);
      }
    }
    return {
      version: typeof buildinfo.version === 'string' ? buildinfo.version : 'unknown',
      dataDir,
      dataDirFrom: this.options.dataDir === undefined ? 'flags' : 'option',
      files: layoutConfigFiles(config, base, ruleFiles, where),
      configFrom,
      unreadableRuleFiles,
      retention:
        typeof flags['storage.tsdb.retention.time'] === 'string'
          ? flags['storage.tsdb.retention.time']
          : undefined,
    };
  }

  /**
   * Reads the server's version (`/api/v1/status/buildinfo`) and flags, finds the data dir and
   * the config and rule files.
   *
   * @throws {ConfigError} when the admin API is disabled, or the data dir is not visible here.
   * @throws {ComponentError} when the server does not answer.
   */
  async describe(context: OperationContext): Promise<ComponentInfo> {
    throwIfAborted(context.signal);
    const plan = await this.#makePlan(context.signal);
    this.#plan = plan;
    const notCaptured = [...NOT_CAPTURED];
    if (plan.configFrom === 'api') {
      notCaptured.push(
        'the config file itself (not readable here): the YAML served by /api/v1/status/config is stored instead, with secrets masked as <secret>',
      );
    }
    if (plan.unreadableRuleFiles.length > 0) {
      notCaptured.push(`rule files not readable here: ${plan.unreadableRuleFiles.join(', ')}`);
    }
    return {
      version: plan.version,
      capabilities: {
        incremental: false,
        pointInTime: false,
        consistentSnapshot: true,
        restoreIntoExisting: true,
        selectiveRestore: false,
      },
      notCaptured,
      secrets: {
        captured: await configSecrets(plan.files, 'Prometheus'),
        notCaptured: [
          {
            kind: 'credentials',
            what: 'files the config points at (password_file, bearer_token_file, credentials_file, TLS key_file): outside the backup',
          },
          ...(plan.configFrom === 'api'
            ? [
                {
                  kind: 'credentials' as const,
                  what: 'secrets in the config: the API masks them as <secret>',
                },
              ]
            : []),
        ],
      },
      details: {
        format: 'TSDB snapshot blocks (admin API) + config and rule files',
        url: this.#api.url,
        dataDir: plan.dataDir,
        dataDirFrom: plan.dataDirFrom,
        skipHead: this.options.skipHead ?? false,
        retention: plan.retention ?? null,
        configFrom: plan.configFrom,
        files: plan.files.map((file) => ({
          entry: `${CONFIG_PREFIX}${file.path}`,
          role: file.role,
          source: file.source ?? '/api/v1/status/config',
        })),
      },
    };
  }

  /**
   * `config/…` (the config and rule files, read whole), then `tsdb/<ULID>/…` for every block of
   * a new snapshot, each file with its size. The snapshot dir is removed when the iteration
   * ends, fails or is abandoned.
   */
  async *backup(context: BackupContext): AsyncIterable<Entry> {
    const plan = this.#plan ?? (await this.#makePlan(context.signal));
    this.#plan = undefined;
    for (const file of plan.files) {
      throwIfAborted(context.signal);
      yield await configEntry(file, this.name);
    }
    throwIfAborted(context.signal);
    const skipHead = this.options.skipHead ?? false;
    const { name } = await this.#api.data<{ name?: unknown }>(
      'POST',
      `/api/v1/admin/tsdb/snapshot?skip_head=${skipHead}`,
      {
        signal: context.signal,
        timeoutMs: this.#snapshotTimeoutMs,
      },
    );
    if (typeof name !== 'string' || !SNAPSHOT_NAME.test(name)) {
      throw new ComponentError(
        this.name,
        `the server named its snapshot ${JSON.stringify(name)}, which is not a plain name.`,
      );
    }
    const snapshotDir = join(plan.dataDir, 'snapshots', name);
    try {
      if (!(await pathExists(snapshotDir))) {
        throw new ComponentError(
          this.name,
          `the server made snapshot "${name}", but "${snapshotDir}" does not exist here: "dataDir" must be the server's --storage.tsdb.path as this process sees it. The snapshot is left in the server's snapshots/ directory; delete it there.`,
        );
      }
      for (const block of (await readdir(snapshotDir)).sort()) {
        if (!ULID.test(block) || !(await stat(join(snapshotDir, block))).isDirectory()) continue;
        for await (const item of walk(join(snapshotDir, block), `${TSDB_PREFIX}${block}/`)) {
          throwIfAborted(context.signal);
          if (item.directory) {
            yield { path: item.path, type: 'directory', mode: 0o755 };
            continue;
          }
          const info = await lstat(item.absolute);
          yield {
            path: item.path,
            type: 'file',
            size: info.size,
            mode: info.mode & 0o777,
            mtime: info.mtime,
            body: createReadStream(item.absolute) as ByteStream,
          };
        }
      }
    } finally {
      await rm(snapshotDir, { recursive: true, force: true });
    }
  }

  /**
   * Writes `tsdb/<ULID>/…` into `restore.dataDir` and `config/…` into `restore.configDir`. Every
   * block and file is staged in a hidden directory inside its target and renamed into place only
   * after all entries were read and checked, so a failed restore publishes nothing and no
   * half-written block is ever visible. A block whose ULID dir exists: `fail` → `ConflictError`,
   * `skip` → kept, `overwrite` → replaced. Config files likewise.
   *
   * @throws {ConfigError} when `restore.dataDir` is not set.
   * @throws {UnsafePathError} for an entry path that would leave its target.
   */
  /**
   * The target's version: `/api/v1/status/buildinfo` of `url` when the server answers, else
   * `prometheus --version` on this machine (restores go into a stopped server's data dir). Blocks
   * restore only into the Prometheus major they came from; forceable. Unknown is not judged.
   */
  async preflight(context: PreflightContext): Promise<PreflightResult> {
    throwIfAborted(context.signal);
    let targetVersion: string | undefined;
    try {
      const buildinfo = await this.#api.data<{ version?: unknown }>('GET', '/api/v1/status/buildinfo', {
        signal: context.signal,
      });
      if (typeof buildinfo.version === 'string') targetVersion = buildinfo.version;
    } catch {
      throwIfAborted(context.signal);
      const local = await runCommand('prometheus', ['--version'], { signal: context.signal }).catch(
        () => undefined,
      );
      targetVersion = /version\s+v?(\d+\.\d+\.\d+\S*)/.exec(local?.output ?? '')?.[1];
    }
    if (targetVersion === undefined) return {};
    const refusal = refuseOtherMajor('Prometheus', context.component.version, targetVersion);
    return { targetVersion, ...(refusal ? { refusal } : {}) };
  }

  async restore(entries: AsyncIterable<Entry>, context: RestoreContext): Promise<RestoreReport> {
    const options = this.options.restore;
    if (!options)
      throw new ConfigError(`prometheus component "${this.name}": restoring needs "restore.dataDir".`);
    const conflict = context.conflict;
    await mkdir(options.dataDir, { recursive: true });
    if (options.configDir !== undefined) await mkdir(options.configDir, { recursive: true });
    const blocks = new StagingArea(options.dataDir);
    const configStaging = options.configDir === undefined ? undefined : new StagingArea(options.configDir);
    const configFiles =
      configStaging === undefined ? undefined : new ConfigFilesRestore(configStaging, conflict);
    const blockState = new Map<string, 'staged' | 'skipped' | 'replace'>();
    const configWithoutTarget: string[] = [];
    let count = 0;
    let bytes = 0;
    let skippedEntries = 0;
    try {
      for await (const entry of entries) {
        throwIfAborted(context.signal);
        count += 1;
        const path = safeEntryPath(entry.path);
        if (path !== entry.path) throw new UnsafePathError(entry.path, 'the path is not in normal form');
        if (path.startsWith(CONFIG_PREFIX)) {
          const relativePath = path.slice(CONFIG_PREFIX.length);
          if (!configFiles) {
            await drain(entry);
            configWithoutTarget.push(relativePath);
            skippedEntries += 1;
            continue;
          }
          if (entry.type !== undefined && entry.type !== 'file') {
            throw new ComponentError(this.name, `"${path}" is a ${entry.type}; config entries are files.`);
          }
          const written = await configFiles.add(relativePath, entry, context.signal);
          if (configFiles.skipped.at(-1) === relativePath) skippedEntries += 1;
          bytes += written;
          continue;
        }
        if (!path.startsWith(TSDB_PREFIX)) {
          throw new ComponentError(
            this.name,
            `unexpected entry "${path}" (neither ${TSDB_PREFIX} nor ${CONFIG_PREFIX}).`,
          );
        }
        const [, block, ...rest] = path.split('/');
        if (block === undefined || !ULID.test(block) || rest.length === 0) {
          throw new UnsafePathError(path, 'a TSDB entry must be tsdb/<ULID>/<file>');
        }
        let state = blockState.get(block);
        if (state === undefined) {
          const target = join(options.dataDir, block);
          const exists = await pathExists(target);
          if (exists && conflict === 'fail') {
            throw new ConflictError(
              target,
              `block "${target}" already exists; restore with conflict "skip" or "overwrite", or into an empty data dir.`,
            );
          }
          state = !exists ? 'staged' : conflict === 'skip' ? 'skipped' : 'replace';
          blockState.set(block, state);
          if (state !== 'skipped') await blocks.directory(block);
        }
        if (state === 'skipped') {
          await drain(entry);
          skippedEntries += 1;
          continue;
        }
        if (entry.type === 'directory') {
          await blocks.directory(path.slice(TSDB_PREFIX.length));
        } else if (entry.type === undefined || entry.type === 'file') {
          bytes += await blocks.write(
            path.slice(TSDB_PREFIX.length),
            entry.body ?? (async function* () {})(),
            (entry.mode ?? 0o644) & 0o777,
            context.signal,
          );
        } else {
          throw new ComponentError(
            this.name,
            `"${path}" is a ${entry.type}; a TSDB block holds only files and directories.`,
          );
        }
      }
      throwIfAborted(context.signal);
      // Every body was read and checked by now. Check the staged blocks, then publish.
      const published: string[] = [];
      const skippedBlocks: string[] = [];
      for (const [block, state] of blockState) {
        if (state === 'skipped') {
          skippedBlocks.push(block);
          continue;
        }
        await this.#checkBlock(blocks.path(block), block);
        if (conflict === 'fail' && (await pathExists(join(options.dataDir, block)))) {
          throw new ConflictError(join(options.dataDir, block));
        }
      }
      await configFiles?.check();
      for (const [block, state] of blockState) {
        if (state === 'skipped') continue;
        await blocks.publish(block, state === 'replace');
        published.push(block);
      }
      const configPublished = (await configFiles?.publish()) ?? [];
      return {
        entries: count,
        bytes,
        skipped: skippedEntries,
        details: {
          dataDir: options.dataDir,
          blocks: published,
          skippedBlocks,
          configDir: options.configDir ?? null,
          configFiles: configPublished,
          skippedConfigFiles: configFiles?.skipped ?? [],
          configFilesWithoutTarget: configWithoutTarget,
        },
      };
    } finally {
      await blocks.dispose();
      await configStaging?.dispose();
    }
  }

  /** A staged block must hold `meta.json` naming its own ULID, an `index` and `chunks/`. */
  async #checkBlock(dir: string, block: string): Promise<void> {
    let meta: unknown;
    try {
      meta = JSON.parse(await readFile(join(dir, 'meta.json'), 'utf8'));
    } catch (error) {
      throw new ComponentError(
        this.name,
        `block ${block} has no readable meta.json: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    if (!isRecord(meta) || meta.ulid !== block) {
      throw new ComponentError(
        this.name,
        `block ${block}: meta.json names another block (${JSON.stringify(isRecord(meta) ? meta.ulid : meta)}).`,
      );
    }
    for (const part of ['index', 'chunks']) {
      if (!(await pathExists(join(dir, part))))
        throw new ComponentError(this.name, `block ${block} has no ${part}.`);
    }
  }
}

/** Same as `new PrometheusComponent(options)`. */
export function prometheus(options: PrometheusOptions): PrometheusComponent {
  return new PrometheusComponent(options);
}
