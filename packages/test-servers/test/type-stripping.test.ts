import { readdirSync, readFileSync } from 'node:fs';
import { stripTypeScriptTypes } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

// The benchmarks run with plain `node` and import these sources through Node's type stripping,
// which refuses TypeScript that needs transforming (parameter properties, enums, namespaces).
describe("@bk/test-servers' sources", () => {
  const dir = join(import.meta.dirname, '..', 'src');
  const files = readdirSync(dir).filter((name) => name.endsWith('.ts'));

  it.each(files)('%s loads under Node type stripping', (name) => {
    expect(() => stripTypeScriptTypes(readFileSync(join(dir, name), 'utf8'))).not.toThrow();
  });
});
