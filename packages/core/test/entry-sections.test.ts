import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { backup, collect, type Entry, inspect, MemoryStorage, type Source, verify } from '../src/index.ts';

/** A component of `count` tiny files in 100 folders: ~1.3 MiB of index lines for 9,000. */
function manyFiles(count: number): Source {
  return {
    kind: 'test',
    name: 'many',
    async describe() {
      return {};
    },
    async *backup(): AsyncIterable<Entry> {
      for (let folder = 0; folder < 100; folder += 1) {
        yield { path: `folder-${folder}`, type: 'directory' };
        for (let file = folder; file < count; file += 100) {
          const body = new TextEncoder().encode(`file ${file}\n`);
          yield {
            path: `folder-${folder}/file-${file}.txt`,
            type: 'file',
            size: body.byteLength,
            body: [body] as unknown as Entry['body'],
          };
        }
      }
    },
  };
}

async function stored(storage: MemoryStorage, key: string): Promise<Buffer> {
  return Buffer.from(await collect(await storage.get(key)));
}

describe('the entry index inside the archive (format 3)', () => {
  it('holds the stored index line for line, in sections GNU tar extracts, and verify checks it', async () => {
    const storage = new MemoryStorage();
    const { name } = await backup({ storage, components: [manyFiles(9_000)] });
    const manifest = await inspect({ storage, name });
    expect(manifest.formatVersion).toBe(3);
    const archived = manifest.entryIndex!.archived!;
    expect(archived.sections).toBeGreaterThan(1);

    const work = mkdtempSync(join(tmpdir(), 'bk-sections-'));
    try {
      const archive = join(work, `${name}.tar.gz`);
      writeFileSync(archive, await stored(storage, `${name}.tar.gz`));
      execFileSync('tar', ['-xzf', archive, '-C', work]);
      const sections = readdirSync(join(work, 'manifest.entries')).sort();
      expect(sections).toHaveLength(archived.sections);
      expect(sections[0]).toBe('000000.ndjson');
      const inside = Buffer.concat(
        sections.map((file) => readFileSync(join(work, 'manifest.entries', file))),
      );
      const index = gunzipSync(await stored(storage, manifest.entryIndex!.key));
      expect(inside.equals(index)).toBe(true);
      // Every file entry the archive lists matches the file GNU tar extracted.
      let component = '';
      let files = 0;
      for (const line of inside.toString('utf8').split('\n')) {
        if (line === '') continue;
        const record = JSON.parse(line) as { component?: string; path: string; type: string; size: number };
        if (record.component !== undefined) component = record.component;
        else if (record.type === 'file') {
          expect(readFileSync(join(work, component, record.path)).byteLength).toBe(record.size);
          files += 1;
        }
      }
      expect(files).toBe(9_000);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
    await expect(verify({ storage, name })).resolves.toMatchObject({ entries: 9_100 });
  });

  it('fails verify when the stored index and the archive copy disagree', async () => {
    const storage = new MemoryStorage();
    const { name } = await backup({ storage, components: [manyFiles(300)] });
    const manifest = await inspect({ storage, name });
    // Another index whose own size and sha256 are recorded, but whose lines differ from the archive's.
    const key = manifest.entryIndex!.key;
    const lines = gunzipSync(await stored(storage, key))
      .toString('utf8')
      .replace('file-0.txt"', 'file-0.txt" ');
    const { gzipSync } = await import('node:zlib');
    const forged = gzipSync(Buffer.from(lines));
    await storage.delete(key);
    await storage.put(key, forged);
    const { createHash } = await import('node:crypto');
    const sidecarKey = `${name}.manifest.json`;
    const sidecar = JSON.parse((await stored(storage, sidecarKey)).toString('utf8'));
    sidecar.entryIndex.size = forged.byteLength;
    sidecar.entryIndex.sha256 = createHash('sha256').update(forged).digest('hex');
    await storage.delete(sidecarKey);
    await storage.put(sidecarKey, Buffer.from(JSON.stringify(sidecar)));
    await expect(verify({ storage, name })).rejects.toThrow(/differs from the copy inside the archive/);
  });
});
