/**
 * The compression stage alone, for hot-path.ts: reads a file (a tar stream made before the
 * timing) through bk's `compress()` and counts the output bytes instead of writing them.
 *
 *   node dist/hot-path-compress.js --file data.tar [--format gzip|zstd] [--level 6] [--workers N]
 *
 * hot-path.ts runs it built (`pnpm build` here), as bk ships, not through Node's type stripping.
 * Without `--workers` the default applies (`defaultWorkers()`); `--workers 0` is the
 * single-thread Node zlib stream. Prints `{"inputBytes":…,"outputBytes":…}` on stdout.
 */
import { createReadStream } from 'node:fs';
import { parseArgs } from 'node:util';
import { type CompressionFormat, compress } from '@bk/core';

const { values } = parseArgs({
  options: {
    file: { type: 'string' },
    format: { type: 'string', default: 'gzip' },
    level: { type: 'string' },
    workers: { type: 'string' },
  },
});
if (!values.file) throw new Error('--file is required');
let inputBytes = 0;
async function* source(): AsyncGenerator<Uint8Array> {
  for await (const chunk of createReadStream(values.file!, { highWaterMark: 1024 * 1024 })) {
    inputBytes += (chunk as Buffer).byteLength;
    yield chunk as Buffer;
  }
}
let outputBytes = 0;
for await (const chunk of compress(source(), {
  format: values.format as CompressionFormat,
  ...(values.level === undefined ? {} : { level: Number(values.level) }),
  ...(values.workers === undefined ? {} : { workers: Number(values.workers) }),
}))
  outputBytes += chunk.byteLength;
console.log(JSON.stringify({ inputBytes, outputBytes }));
