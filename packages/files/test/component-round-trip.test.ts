import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { componentRoundTrip } from '@bk/test-suite';
import { describe, it } from 'vitest';
import { files } from '../src/index.ts';
import { emptyDirectory, removeTree, snapshotTree, writeSampleTree } from './tree.ts';

describe('@bk/test-suite componentRoundTrip on FilesComponent', () => {
  componentRoundTrip(it, async () => {
    const root = await mkdtemp(join(tmpdir(), 'bk-files-suite-'));
    return {
      component: files({ name: 'config', root, paths: ['.'] }),
      seed: () => writeSampleTree(root),
      snapshot: () => snapshotTree(root),
      reset: () => emptyDirectory(root),
      cleanup: () => removeTree(root),
    };
  });
});
