/** Where `bk` writes: `process.stdout`, `process.stderr`, or anything shaped like them in tests. */
export interface OutputStream {
  write(text: string): unknown;
  /** True on a terminal; the progress bar is drawn only then. */
  isTTY?: boolean;
  /** Terminal width; the progress bar fits itself to it. */
  columns?: number;
}
