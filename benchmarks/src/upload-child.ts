/**
 * One measured upload, in a fresh process so its RSS is its own: loads the adapter, warms it up
 * with a small put, records the baseline RSS, then streams a file through `storage.put` while
 * sampling RSS every 10 ms. Prints one JSON line.
 *
 *   node src/upload-child.ts '<json: { adapter, options, file, key }>'
 */
import { createReadStream } from 'node:fs';
import type { Storage } from '@bk/core';

const { adapter, options, file, key } = JSON.parse(process.argv[2]!) as {
  adapter: 's3' | 'swift' | 'azure';
  options: Record<string, unknown>;
  file: string;
  key: string;
};

async function open(): Promise<Storage> {
  if (adapter === 's3') return new (await import('@bk/storage-s3')).S3Storage(options as never);
  if (adapter === 'swift') return new (await import('@bk/storage-swift')).SwiftStorage(options as never);
  return new (await import('@bk/storage-azure')).AzureStorage(options as never);
}

const storage = await open();
await storage.put(`${key}.warmup`, new Uint8Array(1024 * 1024));
await storage.delete(`${key}.warmup`);
globalThis.gc?.();
const baseline = process.memoryUsage().rss;
let peak = baseline;
const timer = setInterval(() => {
  peak = Math.max(peak, process.memoryUsage().rss);
}, 10);
const started = performance.now();
await storage.put(key, createReadStream(file, { highWaterMark: 1024 * 1024 }));
const seconds = (performance.now() - started) / 1000;
clearInterval(timer);
peak = Math.max(peak, process.memoryUsage().rss);
console.log(JSON.stringify({ baselineMiB: baseline / 2 ** 20, peakMiB: peak / 2 ** 20, seconds }));
