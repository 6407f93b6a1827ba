import { defineConfig } from 'tsup';

/** The compression-stage child of hot-path.ts, run as JavaScript as bk itself ships (see there). */
export default defineConfig({
  entry: ['src/hot-path-compress.ts'],
  format: ['esm'],
  target: 'node22',
  platform: 'node',
  clean: true,
  dts: false,
});
