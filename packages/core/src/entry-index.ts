import { createHash, type Hash } from 'node:crypto';
import { ageDecryptKeys, decryptAge } from './age.ts';
import type { ByteStream, Storage } from './contracts.ts';
import { EntryTree } from './entry-tree.ts';
import { IntegrityError, ManifestError } from './errors.ts';
import { gunzip, gzip } from './gzip.ts';
import { digest } from './hash.ts';
import {
  type ArchivedEntryIndex,
  entrySectionName,
  isStored,
  type ManifestComponent,
  type ManifestEntry,
  type SidecarManifest,
  validateEntry,
} from './manifest.ts';
import type { TarRecordInput } from './tar.ts';

/** An entry of the manifest with the component it belongs to, in archive order. */
export interface ComponentEntry {
  component: ManifestComponent;
  record: ManifestEntry;
}

/** NDJSON gathered before it is handed to gzip: the index writer's memory, with {@link INDEX_QUEUE}. */
const INDEX_BATCH_BYTES = 64 * 1024;
/** Batches waiting for the index upload before the archive waits for it. */
const INDEX_QUEUE = 4;
/** The longest line the index reader accepts: a path and a link target of 64 KiB each, and more. */
const MAX_INDEX_LINE = 256 * 1024;

/**
 * Writes the entry index of a format-2 backup as its entries are archived: NDJSON lines batched
 * into 64 KiB, gzip-compressed into {@link stream}, which the backup runner stores while the
 * archive is written. Memory: a few batches, whatever the number of entries; when the upload
 * falls behind, {@link entry} returns a promise to wait on.
 */
export class EntryIndexWriter {
  /** The compressed index; stored beside the archive. */
  readonly stream: ByteStream;
  entries = 0;
  #batch = '';
  readonly #queue: Uint8Array[] = [];
  #ended = false;
  #failure: { error: unknown } | undefined;
  #wakeReader: (() => void) | undefined;
  #wakeWriter: (() => void) | undefined;

  readonly #tap: ((line: string) => void) | undefined;

  /**
   * @param tap Called with every NDJSON line (newline included) as it is added: the backup
   *   runner copies them into the archive's entry-index sections.
   */
  constructor(level = 6, tap?: (line: string) => void) {
    this.stream = gzip(this.#lines(), { level });
    this.#tap = tap;
  }

  /** Starts a component's entries (a component with none is still named). */
  component(name: string): Promise<void> | undefined {
    return this.#write(`${JSON.stringify({ component: name })}\n`);
  }

  /** Adds one entry; returns a promise only when the caller must wait for the upload to catch up. */
  entry(record: ManifestEntry): Promise<void> | undefined {
    this.entries += 1;
    return this.#write(`${JSON.stringify(record)}\n`);
  }

  /** Ends the index: the stream ends once the rest is compressed. */
  end(): void {
    if (this.#batch !== '') this.#queue.push(Buffer.from(this.#batch));
    this.#batch = '';
    this.#ended = true;
    this.#wakeReader?.();
  }

  /** Fails the stream (and so the upload reading it) with `error`. */
  fail(error: unknown): void {
    this.#failure ??= { error };
    this.#ended = true;
    this.#wakeReader?.();
    this.#wakeWriter?.();
  }

  #write(line: string): Promise<void> | undefined {
    if (this.#failure) throw this.#failure.error;
    this.#tap?.(line);
    this.#batch += line;
    if (this.#batch.length < INDEX_BATCH_BYTES) return undefined;
    this.#queue.push(Buffer.from(this.#batch));
    this.#batch = '';
    this.#wakeReader?.();
    if (this.#queue.length <= INDEX_QUEUE) return undefined;
    return new Promise<void>((resolve) => {
      this.#wakeWriter = resolve;
    }).then(() => {
      this.#wakeWriter = undefined;
      if (this.#failure) throw this.#failure.error;
    });
  }

  async *#lines(): ByteStream {
    for (;;) {
      if (this.#failure) throw this.#failure.error;
      const next = this.#queue.shift();
      if (next) {
        if (this.#queue.length <= INDEX_QUEUE) this.#wakeWriter?.();
        yield next;
        continue;
      }
      if (this.#ended) return;
      await new Promise<void>((resolve) => {
        this.#wakeReader = resolve;
      });
      this.#wakeReader = undefined;
    }
  }
}

/** Bytes of entry-index lines gathered before they become a section of the archive (format 3). */
export const ENTRY_SECTION_BYTES = 1024 * 1024;
/** The largest section a reader accepts: a full section, plus the longest line, plus its newline. */
export const MAX_ENTRY_SECTION = ENTRY_SECTION_BYTES + MAX_INDEX_LINE + 1;

/**
 * The archive's own copy of the entry index (format 3): the index's NDJSON lines, uncompressed,
 * gathered into sections of about {@link ENTRY_SECTION_BYTES} that the backup writes as
 * `manifest.entries/NNNNNN.ndjson` records between the entries they follow, and the rest just
 * before `manifest.json`. Memory: one section.
 */
export class EntrySections {
  #pending = '';
  #sections = 0;
  #bytes = 0;
  readonly #hash: Hash = createHash('sha256');

  /** Adds one line (newline included); give it as `EntryIndexWriter`'s tap. */
  add(line: string): void {
    this.#pending += line;
  }

  /** The next section record once a full one is gathered, or with `rest`, whatever is gathered. */
  take(rest = false): TarRecordInput | undefined {
    if (this.#pending.length === 0 || (!rest && this.#pending.length < ENTRY_SECTION_BYTES)) return undefined;
    const body = Buffer.from(this.#pending);
    this.#pending = '';
    this.#hash.update(body);
    this.#bytes += body.byteLength;
    const name = entrySectionName(this.#sections);
    this.#sections += 1;
    return { name, type: 'file', size: body.byteLength, mode: 0o644, body };
  }

  /** What the manifest records; call after the last {@link take}. */
  result(): ArchivedEntryIndex {
    return { sections: this.#sections, bytes: this.#bytes, sha256: this.#hash.copy().digest('hex') };
  }
}

function invalid(line: number, problem: string): never {
  throw new ManifestError(`Invalid entry index: line ${line} ${problem}.`);
}

/** Splits a byte stream into lines (without the newline), each at most {@link MAX_INDEX_LINE}. */
async function* lines(source: ByteStream): AsyncIterable<string> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let rest = '';
  for await (const chunk of source) {
    rest += decoder.decode(chunk, { stream: true });
    let start = 0;
    for (let newline = rest.indexOf('\n'); newline >= 0; newline = rest.indexOf('\n', start)) {
      yield rest.slice(start, newline);
      start = newline + 1;
    }
    rest = rest.slice(start);
    if (rest.length > MAX_INDEX_LINE) throw new ManifestError('Invalid entry index: a line is too long.');
  }
  rest += decoder.decode();
  if (rest !== '')
    throw new ManifestError('Invalid entry index: it does not end with a newline; it is truncated.');
}

/**
 * The entries of a backup, in archive order, as a stream: from the manifest itself (format 1)
 * or read from its entry index (format 2), checked line by line — every line a valid entry,
 * the components in the manifest's order with the counts and bytes it records, each path once
 * and nothing under a file or link (see `EntryTree`), and the index's own size and sha256 — so
 * a damaged or crafted index fails with a `ManifestError` or `IntegrityError` before the entry it
 * concerns is used. Memory: one line and the `EntryTree` of a component, not the whole list.
 */
export async function* manifestEntries(
  storage: Storage,
  manifest: SidecarManifest,
  options: { signal?: AbortSignal; identities?: readonly string[] } = {},
): AsyncIterable<ComponentEntry> {
  const index = manifest.entryIndex;
  if (!index) {
    for (const component of manifest.components)
      for (const record of component.entries ?? []) yield { component, record };
    return;
  }
  const stored = digest(await storage.get(index.key, { signal: options.signal }));
  const ceiling = manifest.archive.size * (manifest.compression === 'zstd' ? 32_768 : 1032);
  let tarBytes = 1024;
  let componentIndex = -1;
  let component: ManifestComponent | undefined;
  let tree = new EntryTree();
  let entries = 0;
  let bytes = 0;
  let total = 0;
  let number = 0;
  const endComponent = () => {
    if (component && (entries !== component.stats.entries || bytes !== component.stats.bytes)) {
      throw new IntegrityError(
        `The entry index lists ${entries} entries (${bytes} bytes) for component "${component.name}" but the manifest records ${component.stats.entries} (${component.stats.bytes} bytes).`,
      );
    }
  };
  const compressed = manifest.encryption
    ? decryptAge(stored.stream, {
        ...ageDecryptKeys(options.identities),
        expectedRecipients: manifest.encryption.recipients,
        what: `the entry index of backup "${manifest.name}"`,
      })
    : stored.stream;
  // 64 KiB of text at a time: a larger piece decodes into a string in V8's large-object space,
  // which only a full collection frees (megabytes of them pile up over an index of many entries).
  // Format 3 records the sha256 of the uncompressed lines too: the archive holds the same lines.
  const plain = digest(gunzip(compressed, { chunkSize: 64 * 1024 }));
  for await (const line of lines(plain.stream)) {
    number += 1;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      invalid(number, 'is not valid JSON');
    }
    if (typeof value === 'object' && value !== null && 'component' in value) {
      endComponent();
      componentIndex += 1;
      component = manifest.components[componentIndex];
      if (!component || (value as { component: unknown }).component !== component.name)
        invalid(
          number,
          `names component ${JSON.stringify((value as { component: unknown }).component)} out of the manifest's order`,
        );
      tree = new EntryTree();
      entries = 0;
      bytes = 0;
      continue;
    }
    if (!component) invalid(number, 'comes before any component');
    const record = validateEntry(value, `line ${number}`);
    const problem = tree.add(record.path, record.type);
    if (problem !== undefined) invalid(number, `is refused: ${problem}`);
    if (record.chunks !== undefined && record.chunks > Math.max(1, record.size))
      invalid(number, `has ${record.chunks} chunks for ${record.size} bytes`);
    const stored = isStored(record);
    if (stored) tarBytes += (record.chunks ?? 1) * 512 + record.size;
    if (tarBytes > ceiling)
      invalid(number, `takes the entries past what an archive of ${manifest.archive.size} bytes can hold`);
    entries += 1;
    if (stored) bytes += record.size;
    total += 1;
    yield { component, record };
  }
  endComponent();
  if (componentIndex !== manifest.components.length - 1) {
    throw new IntegrityError(
      `The entry index ends after ${componentIndex + 1} of the manifest's ${manifest.components.length} components: it is truncated.`,
    );
  }
  if (total !== index.entries) {
    throw new IntegrityError(
      `The entry index lists ${total} entries but the manifest records ${index.entries}.`,
    );
  }
  if (stored.result.size !== index.size || stored.result.sha256 !== index.sha256) {
    throw new IntegrityError(
      `The entry index "${index.key}" holds ${stored.result.size} bytes with sha256 ${stored.result.sha256}; the manifest records ${index.size} bytes with ${index.sha256}.`,
    );
  }
  if (
    index.archived &&
    (plain.result.size !== index.archived.bytes || plain.result.sha256 !== index.archived.sha256)
  ) {
    throw new IntegrityError(
      `The entry index "${index.key}" differs from the copy inside the archive: ${plain.result.size} bytes with sha256 ${plain.result.sha256} against ${index.archived.bytes} with ${index.archived.sha256}.`,
    );
  }
}
