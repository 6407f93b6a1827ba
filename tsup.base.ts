import type { Options } from 'tsup';

/**
 * The one tsup configuration every package spreads: ESM only, `.d.ts` beside
 * every entry, Node 22 as the target, dependencies left external.
 */
export const tsupBase: Options = {
  format: ['esm'],
  target: 'node22',
  platform: 'node',
  // tsup's declaration build cannot run with `composite` (TS6307); `tsc --build` keeps using it.
  dts: { compilerOptions: { composite: false } },
  sourcemap: true,
  clean: true,
  splitting: false,
  treeshake: true,
};
