import { createHash, hash } from 'node:crypto';
import { ageDecryptKeys, decryptAge } from './age.ts';
import { decompress } from './compress.ts';
import type { BackupContext, ByteStream, ComponentInfo, Entry, Source } from './contracts.ts';
import { type ComponentEntry, MAX_ENTRY_SECTION } from './entry-index.ts';
import { EntryTree } from './entry-tree.ts';
import { BkError, ConfigError, IntegrityError } from './errors.ts';
import { releaseWholeHandedOver } from './handover.ts';
import { digest } from './hash.ts';
import {
  ENTRY_SECTIONS_DIR,
  entrySectionName,
  isStored,
  MANIFEST_ENTRY,
  type Manifest,
  type ManifestComponent,
  type ManifestEntry,
  type SidecarManifest,
} from './manifest.ts';
import { formatMtime, mtimeDate, mtimeNanoseconds, parseMtime } from './mtime.ts';
import { safeEntryPath } from './paths.ts';
import { abortable, collect, rechunk } from './streams.ts';
import { describeTypeflag, type TarRecord, type TarRecordInput, unpackTar } from './tar.ts';

/** Default size of the chunks a stream of unknown length is stored as; the memory it costs. */
export const DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024;

/** The tar name of chunk `index` of an entry stored in chunks. */
export function chunkName(archivePath: string, index: number): string {
  return `${archivePath}/part-${String(index).padStart(6, '0')}`;
}

export interface ArchiveComponent {
  source: Source;
  info: ComponentInfo;
  /** Recorded as `incremental: true`: the source holds only what changed since the backup's parent. */
  incremental?: boolean;
}

/**
 * Where {@link archiveRecords} lists each entry once its body is hashed: the entry index of a
 * format-2 backup (see `EntryIndexWriter`). A returned promise is waited for before the next entry.
 */
export interface EntrySink {
  component(name: string): Promise<void> | undefined;
  entry(record: ManifestEntry): Promise<void> | undefined;
}

/**
 * Turns components into tar records, `<component>/<path>` each, hashing every body on the way,
 * filling `manifest.components` (names and stats) and listing every entry in `sink`; the caller
 * adds the manifest itself as the last record.
 */
export async function* archiveRecords(
  components: ArchiveComponent[],
  manifest: Manifest,
  context: BackupContext,
  sink: EntrySink,
  chunkSize = DEFAULT_CHUNK_SIZE,
): AsyncIterable<TarRecordInput> {
  const { progress, signal } = context;
  for (const { source, info, incremental } of components) {
    const record: ManifestComponent = {
      name: source.name,
      kind: source.kind,
      ...(info.version === undefined ? {} : { version: info.version }),
      info,
      ...(incremental ? { incremental: true } : {}),
      stats: { entries: 0, bytes: 0 },
    };
    manifest.components.push(record);
    const started = sink.component(source.name);
    if (started) await started;
    progress({ type: 'component-start', component: source.name, kind: source.kind });
    const tree = new EntryTree();
    for await (const entry of abortable(source.backup(context), signal)) {
      const path = safeEntryPath(entry.path);
      const archivePath = `${source.name}/${path}`;
      const type = entry.type ?? 'file';
      const problem = tree.add(path, type);
      if (problem !== undefined) {
        throw new ConfigError(
          `${source.name}: the component yielded an entry no restore could write: ${problem}.`,
        );
      }
      const mtimeNs =
        entry.mtime === undefined && entry.mtimeNs === undefined
          ? undefined
          : mtimeNanoseconds(entry.mtime ?? new Date(0), entry.mtimeNs);
      const base = {
        path,
        type,
        ...(entry.mode === undefined ? {} : { mode: entry.mode & 0o7777 }),
        ...(mtimeNs === undefined ? {} : { mtime: formatMtime(mtimeNs) }),
        ...(entry.identity === undefined ? {} : { identity: entry.identity }),
      };
      // The header holds whole seconds, as GNU tar's default format writes; the manifest keeps
      // the nanoseconds, which restore sets. A pax mtime would add 1 KiB of tar per entry: a
      // quarter of the compressed archive of small files, and an eighth of the backup's CPU.
      const times = mtimeNs === undefined ? {} : { mtime: mtimeDate(mtimeNs), mtimeNs, paxMtime: false };
      progress({
        type: 'entry-start',
        component: source.name,
        path,
        ...(entry.size === undefined ? {} : { size: entry.size }),
      });
      let manifestEntry: ManifestEntry;
      if (entry.deleted === true) {
        // Recorded only: the archive holds no record for a path that is gone.
        manifestEntry = { path, type, size: 0, deleted: true };
      } else if (entry.ref !== undefined) {
        if (type !== 'file' || entry.size === undefined || entry.sha256 === undefined || entry.body) {
          throw new ConfigError(
            `${source.name}: the reference "${path}" must be a file with size and sha256 and no body.`,
          );
        }
        // The body is in the referenced backup's archive; this archive holds no record for it.
        manifestEntry = { ...base, size: entry.size, sha256: entry.sha256, ref: entry.ref };
      } else if (type === 'file' && entry.size !== undefined && entry.size <= SMALL_BODY) {
        // A small body is read whole and hashed in one call, and goes to the tar writer as one
        // buffer: three stream stages and their promises per entry cost more than the bytes.
        const body = await readSmallBody(entry.body, entry.size);
        if (body.byteLength > 0)
          progress({ type: 'bytes', component: source.name, path, bytes: body.byteLength });
        // Hashed before the tar writer has it: a handed-over body may be freed once written.
        manifestEntry = { ...base, size: body.byteLength, sha256: sha256Hex(body) };
        yield { name: archivePath, type, size: entry.size, mode: entry.mode, ...times, body };
      } else if (type === 'file') {
        const counted = countEntryBytes(entry.body ?? emptyBody(), source.name, path, context);
        const { stream, result } = digest(counted);
        if (entry.size !== undefined) {
          yield {
            name: archivePath,
            type,
            size: entry.size,
            mode: entry.mode,
            ...times,
            body: stream,
          };
          manifestEntry = { ...base, size: result.size, sha256: result.sha256 };
        } else {
          let index = 0;
          for await (const chunk of rechunk(stream, chunkSize)) {
            yield {
              name: chunkName(archivePath, index),
              type,
              size: chunk.byteLength,
              mode: entry.mode,
              ...times,
              body: chunk,
            };
            index += 1;
          }
          if (index === 0) {
            yield {
              name: chunkName(archivePath, 0),
              type,
              size: 0,
              mode: entry.mode,
              ...times,
              body: new Uint8Array(0),
            };
            index = 1;
          }
          manifestEntry = { ...base, size: result.size, sha256: result.sha256, chunks: index };
        }
      } else if (type === 'symlink') {
        if (!entry.linkTarget) throw new ConfigError(`${source.name}: symlink "${path}" has no linkTarget.`);
        yield {
          name: archivePath,
          type,
          size: 0,
          mode: entry.mode,
          ...times,
          linkTarget: entry.linkTarget,
        };
        manifestEntry = { ...base, size: 0, linkTarget: entry.linkTarget };
      } else {
        yield { name: archivePath, type, size: 0, mode: entry.mode, ...times };
        manifestEntry = { ...base, size: 0 };
      }
      const listed = sink.entry(manifestEntry);
      if (listed) await listed;
      record.stats.entries += 1;
      if (isStored(manifestEntry)) record.stats.bytes += manifestEntry.size;
      progress({
        type: 'entry-end',
        component: source.name,
        path,
        size: manifestEntry.size,
        ...(manifestEntry.sha256 ? { sha256: manifestEntry.sha256 } : {}),
      });
    }
    progress({
      type: 'component-end',
      component: source.name,
      entries: record.stats.entries,
      bytes: record.stats.bytes,
    });
  }
}

async function* emptyBody(): ByteStream {}

/** Files of at most this many bytes (announced) are read whole before their record is written. */
const SMALL_BODY = 64 * 1024;
const EMPTY_BODY = new Uint8Array(0);

/**
 * A small body's bytes, read up to one byte past `size` (the tar writer then refuses a body
 * that grew or shrank, as it does a streamed one). Chunks handed over are freed once copied.
 */
async function readSmallBody(body: ByteStream | undefined, size: number): Promise<Uint8Array> {
  if (body === undefined) return EMPTY_BODY;
  let first: Uint8Array | undefined;
  let chunks: Uint8Array[] | undefined;
  let total = 0;
  for await (const chunk of body) {
    if (chunk.byteLength === 0) continue;
    total += chunk.byteLength;
    if (first === undefined) first = chunk;
    else (chunks ??= [first]).push(chunk);
    if (total > size) break;
  }
  if (chunks === undefined) return first ?? EMPTY_BODY;
  const whole = Buffer.concat(chunks, total);
  for (const chunk of chunks) releaseWholeHandedOver(chunk);
  return whole;
}

async function* countEntryBytes(
  body: ByteStream,
  component: string,
  path: string,
  context: BackupContext,
): ByteStream {
  for await (const chunk of body) {
    context.progress({ type: 'bytes', component, path, bytes: chunk.byteLength });
    yield chunk;
  }
}

function sha256Hex(bytes: Uint8Array): string {
  return hash('sha256', bytes, 'hex');
}

/** An entry read back from an archive, with the manifest record it was checked against. */
export interface ArchivedEntry {
  component: ManifestComponent;
  record: ManifestEntry;
  entry: Entry;
}

export interface ReadArchiveOptions {
  /** Called with the number of archive (compressed) bytes as they are read. */
  onArchiveBytes?: (bytes: number) => void;
  /** Called with the number of entry bytes as they are verified. */
  onEntryBytes?: (component: string, path: string, bytes: number) => void;
  /**
   * Also check the sha256 of the archive's own (compressed) bytes; default `true`. Without it
   * the archive's size is still checked, and every entry's body, every record and the inner
   * manifest are checked as always: a restore leaves the whole-archive hash to `verify`, since
   * hashing the compressed bytes too costs as much again as hashing the entries on
   * incompressible data.
   */
  archiveDigest?: boolean;
  /**
   * Secret keys (`AGE-SECRET-KEY-1…`) for an encrypted archive (the manifest's `encryption`);
   * the archive is decrypted between the storage bytes and the decompressor.
   */
  identities?: readonly string[];
}

function withEntry(error: unknown, archivePath: string): unknown {
  if (BkError.isInstance(error) && error.code === 'BK_INTEGRITY' && !(error as IntegrityError).entry) {
    return new IntegrityError(`${error.message} The damage is in entry "${archivePath}".`, {
      entry: archivePath,
      cause: error,
    });
  }
  return error;
}

/**
 * Reads an archive back as entries, checking it record by record against its sidecar manifest:
 * every record's name, type and size, every body's sha256, the inner manifest and the archive's
 * own size and sha256 (see `archiveDigest`). The first mismatch throws an `IntegrityError` naming the entry. An entry's
 * body need not be read: whatever the consumer leaves is read and checked before the next entry.
 */
export async function* readArchive(
  archive: ByteStream,
  sidecar: SidecarManifest,
  options: ReadArchiveOptions = {},
  entries: AsyncIterable<ComponentEntry> = manifestEntriesOf(sidecar),
): AsyncIterable<ArchivedEntry> {
  let archiveSize = 0;
  const counted = (async function* () {
    for await (const chunk of archive) {
      archiveSize += chunk.byteLength;
      options.onArchiveBytes?.(chunk.byteLength);
      yield chunk;
    }
  })();
  const archiveDigest = options.archiveDigest === false ? undefined : digest(counted);
  const stored = archiveDigest?.stream ?? counted;
  const compressed = sidecar.encryption
    ? decryptAge(stored, {
        ...ageDecryptKeys(options.identities),
        expectedRecipients: sidecar.encryption.recipients,
        what: `the archive of backup "${sidecar.name}"`,
        thread: true,
      })
    : stored;
  const records = unpackTar(decompress(compressed, sidecar.compression))[Symbol.asyncIterator]();
  let currentPath = MANIFEST_ENTRY;
  // Format 3: the archive's own copy of the entry index, in sections between the entries.
  const archived = sidecar.entryIndex?.archived;
  const sectionHash = createHash('sha256');
  let sectionCount = 0;
  let sectionBytes = 0;

  /** Reads section `record` into the running hash, checking its name and bounds. */
  async function readSection(record: TarRecord): Promise<void> {
    const name = entrySectionName(sectionCount);
    if (record.name !== name || record.type !== 'file' || record.size > MAX_ENTRY_SECTION) {
      throw new IntegrityError(
        `The archive holds "${record.name}" where its entry-index section "${name}" (a file of at most ${MAX_ENTRY_SECTION} bytes) belongs.`,
        { entry: record.name },
      );
    }
    let size = 0;
    for await (const chunk of record.body) {
      size += chunk.byteLength;
      sectionHash.update(chunk);
    }
    if (size !== record.size) {
      throw new IntegrityError(`Entry-index section "${name}" is truncated.`, { entry: name });
    }
    sectionCount += 1;
    sectionBytes += size;
  }

  async function nextRecord(expected: string): Promise<TarRecord> {
    let result: IteratorResult<TarRecord>;
    for (;;) {
      try {
        result = await records.next();
      } catch (error) {
        throw withEntry(error, expected);
      }
      if (archived === undefined || result.done || !result.value.name.startsWith(`${ENTRY_SECTIONS_DIR}/`))
        break;
      await readSection(result.value);
    }
    if (result.done) {
      throw new IntegrityError(`The archive ends before entry "${expected}": it is truncated.`, {
        entry: expected,
      });
    }
    const name = result.value.name.replace(/\/+$/, '');
    if (name !== expected) {
      throw new IntegrityError(`Expected entry "${expected}" but the archive holds "${name}" there.`, {
        entry: expected,
      });
    }
    return result.value;
  }

  try {
    for await (const { component, record } of entries) {
      const archivePath = `${component.name}/${record.path}`;
      currentPath = archivePath;
      if (!isStored(record)) {
        // A reference or a deletion: recorded in the manifest, no record in this archive.
        yield {
          component,
          record,
          entry: {
            path: record.path,
            type: record.type,
            size: record.size,
            ...(record.mode === undefined ? {} : { mode: record.mode }),
            ...mtimeFields(record.mtime),
            ...(record.ref === undefined ? {} : { ref: record.ref, sha256: record.sha256 }),
            ...(record.deleted ? { deleted: true as const } : {}),
          },
        };
        continue;
      }
      // Chunk names are made as they are reached: a count is never allocated for.
      const chunks = record.type === 'file' ? record.chunks : undefined;
      const nameOf = (index: number): string =>
        chunks === undefined ? archivePath : chunkName(archivePath, index);
      const first = await nextRecord(nameOf(0));
      checkRecordHeader(record, first, archivePath);
      if (record.chunks === undefined && first.size !== record.size) {
        throw new IntegrityError(
          `Entry "${archivePath}" holds ${first.size} bytes but the manifest records ${record.size}.`,
          {
            entry: archivePath,
          },
        );
      }
      const body =
        record.type !== 'file'
          ? undefined
          : chunks === undefined && record.size <= SMALL_BODY
            ? await smallVerifiedBody(record, archivePath, first, component.name, options)
            : verifiedBody(
                record,
                archivePath,
                chunks ?? 1,
                nameOf,
                first,
                nextRecord,
                component.name,
                options,
              );
      const entry: Entry = {
        path: record.path,
        type: record.type,
        size: record.size,
        ...(record.mode === undefined ? {} : { mode: record.mode }),
        ...mtimeFields(record.mtime),
        ...(record.linkTarget === undefined ? {} : { linkTarget: record.linkTarget }),
        ...(body ? { body: body.stream } : {}),
      };
      yield { component, record, entry };
      if (body) await body.finish();
    }
    currentPath = MANIFEST_ENTRY;
    const manifestRecord = await nextRecord(MANIFEST_ENTRY);
    if (
      archived !== undefined &&
      (sectionCount !== archived.sections ||
        sectionBytes !== archived.bytes ||
        sectionHash.digest('hex') !== archived.sha256)
    ) {
      throw new IntegrityError(
        `The entry index inside the archive (${sectionCount} sections, ${sectionBytes} bytes) differs from the one its manifest records (${archived.sections} sections, ${archived.bytes} bytes, sha256 ${archived.sha256}).`,
        { entry: ENTRY_SECTIONS_DIR },
      );
    }
    const inner = new TextDecoder().decode(await collect(manifestRecord.body, 512 * 1024 * 1024));
    const { archive: _archive, ...expected } = sidecar;
    let same = false;
    try {
      const parsed = JSON.parse(inner) as Manifest;
      // `rekey` adds recipients to the sidecar after the archive was written: the archive's own
      // manifest names the first ones.
      const recipients = parsed.encryption?.recipients;
      // It re-wraps the entry index's key too, which changes its stored size and sha256.
      const added =
        recipients !== undefined &&
        expected.encryption !== null &&
        recipients.every((recipient, index) => expected.encryption?.recipients[index] === recipient)
          ? {
              ...expected,
              encryption: parsed.encryption,
              ...(expected.entryIndex && parsed.entryIndex
                ? {
                    entryIndex: {
                      ...expected.entryIndex,
                      size: parsed.entryIndex.size,
                      sha256: parsed.entryIndex.sha256,
                    },
                  }
                : {}),
            }
          : expected;
      same = JSON.stringify(parsed) === JSON.stringify(added);
    } catch {}
    if (!same) {
      throw new IntegrityError('The manifest inside the archive differs from the sidecar manifest.', {
        entry: MANIFEST_ENTRY,
      });
    }
    const trailing = await records.next();
    if (!trailing.done) {
      throw new IntegrityError(
        `The archive holds "${trailing.value.name}" after its manifest, which must be last.`,
        {
          entry: trailing.value.name,
        },
      );
    }
  } catch (error) {
    throw withEntry(error, currentPath);
  } finally {
    await records.return?.();
  }
  if (archiveSize !== sidecar.archive.size) {
    throw new IntegrityError(
      `The archive holds ${archiveSize} bytes but its manifest records ${sidecar.archive.size}.`,
    );
  }
  if (archiveDigest && archiveDigest.result.sha256 !== sidecar.archive.sha256) {
    throw new IntegrityError(
      `The archive's sha256 ${archiveDigest.result.sha256} differs from its manifest's ${sidecar.archive.sha256}.`,
    );
  }
}

/** The entries a format-1 manifest holds itself; a format-2 manifest's come from `manifestEntries`. */
async function* manifestEntriesOf(sidecar: SidecarManifest): AsyncIterable<ComponentEntry> {
  if (sidecar.entryIndex) {
    throw new ConfigError(
      `Backup ${sidecar.name} lists its entries in "${sidecar.entryIndex.key}": read them with manifestEntries().`,
    );
  }
  for (const component of sidecar.components)
    for (const record of component.entries ?? []) yield { component, record };
}

/** An entry's `mtime` and `mtimeNs`, from a manifest mtime the manifest check has validated. */
function mtimeFields(mtime: string | undefined): { mtime?: Date; mtimeNs?: bigint } {
  const mtimeNs = mtime === undefined ? undefined : parseMtime(mtime);
  return mtimeNs === undefined ? {} : { mtime: mtimeDate(mtimeNs), mtimeNs };
}

const TYPE_WORDS = { file: 'a file', directory: 'a directory', symlink: 'a symbolic link' } as const;
const NS_PER_SECOND = 1_000_000_000n;

function checkRecordType(type: ManifestEntry['type'], tar: TarRecord, archivePath: string): void {
  if (tar.type === type) return;
  throw new IntegrityError(
    `Entry "${archivePath}" is ${describeTypeflag(tar.typeflag)} in the archive but ${TYPE_WORDS[type]} in the manifest; bk backs up only files, directories and symbolic links.`,
    { entry: archivePath },
  );
}

/**
 * Checks what a tar header says against the manifest's record of the entry, wherever another
 * reader of the archive (GNU tar, say) would take it from the header: the type, a link's target,
 * the permission bits and the mtime (to the second, and exactly when a pax `mtime` is present).
 * Restore writes what the manifest says; an archive whose headers say otherwise is damaged or
 * crafted, and is refused rather than restored one way by bk and another by tar.
 */
function checkRecordHeader(record: ManifestEntry, tar: TarRecord, archivePath: string): void {
  checkRecordType(record.type, tar, archivePath);
  const differs = (what: string, inArchive: string, inManifest: string): never => {
    throw new IntegrityError(
      `Entry "${archivePath}" has ${what} ${inArchive} in its tar header but ${inManifest} in the manifest.`,
      { entry: archivePath },
    );
  };
  if (record.type === 'symlink' && (tar.linkTarget ?? '') !== record.linkTarget) {
    differs('the link target', JSON.stringify(tar.linkTarget ?? ''), JSON.stringify(record.linkTarget));
  }
  if (record.mode !== undefined && (tar.mode & 0o7777) !== record.mode) {
    differs('mode', `0o${(tar.mode & 0o7777).toString(8)}`, `0o${record.mode.toString(8)}`);
  }
  const mtimeNs = record.mtime === undefined ? undefined : parseMtime(record.mtime);
  if (mtimeNs !== undefined) {
    const wholeSeconds = mtimeNs - (((mtimeNs % NS_PER_SECOND) + NS_PER_SECOND) % NS_PER_SECOND);
    if (tar.mtimeNs !== (tar.paxMtime ? mtimeNs : wholeSeconds)) {
      differs('mtime', formatMtime(tar.mtimeNs), record.mtime!);
    }
  }
}

/**
 * A small body read whole and checked (size, sha256) before its entry is handed out: one hash
 * call and no stream stage per entry. The same checks and errors as {@link verifiedBody}.
 */
async function smallVerifiedBody(
  record: ManifestEntry,
  archivePath: string,
  first: TarRecord,
  component: string,
  options: ReadArchiveOptions,
): Promise<{ stream: ByteStream; finish(): Promise<void> }> {
  let bytes: Uint8Array = EMPTY_BODY;
  let pieces: Uint8Array[] | undefined;
  let size = 0;
  try {
    for await (const chunk of first.body) {
      if (chunk.byteLength === 0) continue;
      size += chunk.byteLength;
      if (bytes.byteLength === 0) bytes = chunk;
      else (pieces ??= [bytes]).push(chunk);
    }
  } catch (error) {
    throw withEntry(error, archivePath);
  }
  if (pieces !== undefined) {
    bytes = Buffer.concat(pieces, size);
    for (const piece of pieces) releaseWholeHandedOver(piece);
  }
  if (size > 0) options.onEntryBytes?.(component, record.path, size);
  if (size !== record.size) {
    throw new IntegrityError(
      `Entry "${archivePath}" has ${size} bytes but the manifest records ${record.size}.`,
      {
        entry: archivePath,
      },
    );
  }
  const sha256 = sha256Hex(bytes);
  if (sha256 !== record.sha256) {
    throw new IntegrityError(
      `Entry "${archivePath}" is corrupt: its sha256 ${sha256} differs from the manifest's ${record.sha256}.`,
      { entry: archivePath },
    );
  }
  const whole = bytes;
  return {
    stream: (async function* () {
      if (whole.byteLength > 0) yield whole;
    })(),
    async finish() {},
  };
}

function verifiedBody(
  record: ManifestEntry,
  archivePath: string,
  records: number,
  nameOf: (index: number) => string,
  first: TarRecord,
  nextRecord: (expected: string) => Promise<TarRecord>,
  component: string,
  options: ReadArchiveOptions,
): { stream: ByteStream; finish(): Promise<void> } {
  const hash = createHash('sha256');
  let size = 0;
  let index = 0;
  let current: AsyncIterator<Uint8Array> | undefined = first.body[Symbol.asyncIterator]();
  let ended = false;

  // Pulls with next() rather than for-await so that a consumer that stops reading early does
  // not close the underlying record: finish() reads and checks the rest.
  async function pull(): Promise<Uint8Array | undefined> {
    while (current) {
      let result: IteratorResult<Uint8Array>;
      try {
        result = await current.next();
      } catch (error) {
        throw withEntry(error, archivePath);
      }
      if (!result.done) {
        hash.update(result.value);
        size += result.value.byteLength;
        options.onEntryBytes?.(component, record.path, result.value.byteLength);
        return result.value;
      }
      index += 1;
      if (index < records) {
        const chunk = await nextRecord(nameOf(index));
        checkRecordType('file', chunk, archivePath);
        current = chunk.body[Symbol.asyncIterator]();
      } else {
        current = undefined;
      }
    }
    if (!ended) {
      ended = true;
      const sha256 = hash.digest('hex');
      if (size !== record.size) {
        throw new IntegrityError(
          `Entry "${archivePath}" has ${size} bytes but the manifest records ${record.size}.`,
          {
            entry: archivePath,
          },
        );
      }
      if (sha256 !== record.sha256) {
        throw new IntegrityError(
          `Entry "${archivePath}" is corrupt: its sha256 ${sha256} differs from the manifest's ${record.sha256}.`,
          {
            entry: archivePath,
          },
        );
      }
    }
    return undefined;
  }

  return {
    stream: (async function* () {
      for (let chunk = await pull(); chunk !== undefined; chunk = await pull()) yield chunk;
    })(),
    async finish() {
      // What the consumer left is only checked: its handed-over buffers are freed at once.
      for (let chunk = await pull(); chunk !== undefined; chunk = await pull()) releaseWholeHandedOver(chunk);
    },
  };
}
