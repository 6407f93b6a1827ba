import type { Options } from 'tsup';

/**
 * The one tsup configuration every package spreads: ESM only, `.d.ts` beside
 * every entry, Node 22 as the target, dependencies left external.
 */
export const tsupBase: Options = {
  format: ['esm'],
  target: 'node22',
  platform: 'node',
  dts: true,
  sourcemap: true,
  clean: true,
  splitting: false,
  treeshake: true,
};
