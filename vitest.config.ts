import { defineConfig } from 'vitest/config';

// Tests run against the TypeScript sources (the "@bk/source" export condition), so a change is
// tested without a build. Tests that run the built `bk` command build first (see README).
const conditions = ['@bk/source', 'node', 'import', 'default'];

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: conditions } },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'examples/*/test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
