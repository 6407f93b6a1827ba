import {
  AbortedError,
  ComponentError,
  ConfigError,
  ConflictError,
  IntegrityError,
  ManifestError,
  ManifestVersionError,
  NotFoundError,
  StorageError,
  UnencryptedSecretsError,
  UnsafePathError,
  VersionMismatchError,
} from '@bk/core';
import { describe, expect, it } from 'vitest';
import { EXIT_CODES, exitCodeFor } from '../src/exit-codes.ts';

describe('exitCodeFor', () => {
  it('maps bk error codes to the documented exit codes', () => {
    expect(exitCodeFor(new ConfigError('x'))).toBe(2);
    expect(exitCodeFor(new NotFoundError('x'))).toBe(3);
    expect(exitCodeFor(new IntegrityError('x'))).toBe(4);
    expect(exitCodeFor(new ManifestError('x'))).toBe(4);
    expect(exitCodeFor(new ManifestVersionError(2, 1))).toBe(4);
    expect(exitCodeFor(new ConflictError('x'))).toBe(5);
    expect(exitCodeFor(new UnsafePathError('x', 'y'))).toBe(5);
    expect(exitCodeFor(new StorageError('x'))).toBe(6);
    expect(exitCodeFor(new UnencryptedSecretsError([{ name: 'etcd', secrets: ['x'] }]))).toBe(8);
    expect(
      exitCodeFor(
        new VersionMismatchError({
          component: 'influx',
          backup: 'b',
          backupVersion: '2.7.1',
          targetVersion: '1.6.7',
          reason: 'x',
          forceable: true,
        }),
      ),
    ).toBe(9);
    expect(exitCodeFor(new AbortedError())).toBe(130);
  });

  it('treats everything else as unexpected', () => {
    expect(exitCodeFor(new ComponentError('c', 'x'))).toBe(EXIT_CODES.unexpected);
    expect(exitCodeFor(new TypeError('x'))).toBe(1);
    expect(exitCodeFor('thrown string')).toBe(1);
  });
});
