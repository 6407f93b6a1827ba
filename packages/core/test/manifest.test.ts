import { describe, expect, it } from 'vitest';
import {
  type Manifest,
  ManifestError,
  ManifestVersionError,
  parseManifest,
  serializeManifest,
  validateManifest,
} from '../src/index.ts';

const valid: Manifest = {
  format: 'bk-backup',
  formatVersion: 1,
  name: 'backup_20261121_101500',
  createdAt: '2026-11-21T10:15:00.000Z',
  completedAt: '2026-11-21T10:15:01.000Z',
  bk: { version: '0.1.0' },
  compression: 'gzip',
  encryption: null,
  parent: null,
  labels: {},
  components: [
    {
      name: 'files',
      kind: 'files',
      info: {},
      entries: [{ path: 'a.txt', type: 'file', size: 1, sha256: 'a'.repeat(64) }],
      stats: { entries: 1, bytes: 1 },
    },
  ],
};

describe('manifest', () => {
  it('round-trips through JSON', () => {
    expect(parseManifest(serializeManifest(valid))).toEqual(valid);
  });

  it('names an unknown format version', () => {
    const error = (() => {
      try {
        validateManifest({ ...valid, formatVersion: 99 });
      } catch (caught) {
        return caught;
      }
    })();
    expect(error).toBeInstanceOf(ManifestVersionError);
    expect((error as Error).message).toContain('version 99');
    expect((error as ManifestVersionError).code).toBe('BK_MANIFEST_VERSION');
  });

  it('rejects unsafe paths, bad hashes and duplicates with the field named', () => {
    const withEntry = (entry: object) => ({
      ...valid,
      components: [{ ...valid.components[0]!, entries: [entry] }],
    });
    expect(() =>
      validateManifest(withEntry({ path: '../x', type: 'file', size: 1, sha256: 'a'.repeat(64) })),
    ).toThrow(/entries\[0\]\.path/);
    expect(() =>
      validateManifest(withEntry({ path: '/x', type: 'file', size: 1, sha256: 'a'.repeat(64) })),
    ).toThrow(ManifestError);
    expect(() => validateManifest(withEntry({ path: 'x', type: 'file', size: 1, sha256: 'zz' }))).toThrow(
      /sha256/,
    );
    expect(() =>
      validateManifest({ ...valid, components: [valid.components[0], valid.components[0]] }),
    ).toThrow(/repeats/);
    expect(() => parseManifest('{not json')).toThrow(ManifestError);
    for (const name of ['..', '/tmp/x', 'a/b', 'manifest.json', '']) {
      expect(
        () => validateManifest({ ...valid, components: [{ ...valid.components[0]!, name }] }),
        name,
      ).toThrow(/components\[0\]\.name/);
    }
  });
});
