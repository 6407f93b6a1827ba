/**
 * The old→new offset map of one restored partition, built while its records are produced in
 * order, and the translation of committed group offsets through it.
 *
 * A committed offset `O` means "the next record to read is the first one at or after `O`". After a
 * restore that record has a new offset; when no backed-up record is at or after `O` (the group had
 * read everything, or committed past the last record), the translation is the partition's new end,
 * so the consumer resumes with the first record written after the restore.
 *
 * The map is kept as runs `[oldStart, newStart, count]` (a partition without gaps is one run);
 * only the committed offsets to translate are looked up, so memory does not grow with records.
 */
/** Records at old offsets `old … old + count - 1` were restored at `new … new + count - 1`. */
export interface OffsetRun {
  old: bigint;
  new: bigint;
  count: bigint;
}

/**
 * Translates `committed` through runs of an earlier restore: the new offset of the first record
 * at or after it, or `undefined` when it is past every run.
 */
export function translateThroughRuns(runs: readonly OffsetRun[], committed: bigint): bigint | undefined {
  for (const run of runs) {
    if (committed < run.old) return run.new;
    if (committed < run.old + run.count) return run.new + (committed - run.old);
  }
  return undefined;
}

export class OffsetTranslation {
  /** Committed offsets still waiting for the first record at or after them, ascending. */
  readonly #pending: bigint[];
  readonly #translated = new Map<bigint, bigint>();
  readonly runs: [oldStart: string, newStart: string, count: number][] = [];
  /** Whether `runs` stopped growing at `maxRuns`. */
  runsTruncated = false;
  /** Every run as numbers, for translating offsets of a later link of an incremental chain (up to `maxKept`). */
  readonly kept: OffsetRun[] = [];
  keptTruncated = false;
  #last:
    | { old: bigint; new: bigint; count: number; run?: [string, string, number]; kept?: OffsetRun }
    | undefined;
  records = 0;

  /** Runs reported in `runs` at most. */
  readonly maxRuns: number;
  /** Runs kept in `kept` at most. */
  readonly maxKept: number;

  constructor(committed: Iterable<bigint>, maxRuns = 1_000, maxKept = 1_000_000) {
    this.maxRuns = maxRuns;
    this.maxKept = maxKept;
    this.#pending = [...new Set(committed)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /** Records that the backed-up record at `oldOffset` now sits at `newOffset`; call in offset order. */
  add(oldOffset: bigint, newOffset: bigint): void {
    this.records += 1;
    while (this.#pending.length > 0 && this.#pending[0]! <= oldOffset) {
      this.#translated.set(this.#pending.shift()!, newOffset);
    }
    const last = this.#last;
    if (last && oldOffset === last.old + BigInt(last.count) && newOffset === last.new + BigInt(last.count)) {
      last.count += 1;
      if (last.run) last.run[2] = last.count;
      if (last.kept) last.kept.count = BigInt(last.count);
      return;
    }
    this.#last = { old: oldOffset, new: newOffset, count: 1 };
    if (this.kept.length < this.maxKept) {
      this.#last.kept = { old: oldOffset, new: newOffset, count: 1n };
      this.kept.push(this.#last.kept);
    } else this.keptTruncated = true;
    if (this.runs.length < this.maxRuns) {
      this.#last.run = [oldOffset.toString(), newOffset.toString(), 1];
      this.runs.push(this.#last.run);
    } else this.runsTruncated = true;
  }

  /** Ends the partition: committed offsets past every record translate to `newEnd`. */
  finish(newEnd: bigint): void {
    for (const offset of this.#pending.splice(0)) this.#translated.set(offset, newEnd);
  }

  /** The new offset for a committed one; only after {@link finish}. */
  translate(committed: bigint): bigint {
    const translated = this.#translated.get(committed);
    if (translated === undefined) throw new Error(`offset ${committed} was not registered for translation`);
    return translated;
  }
}
