import { describe, expect, it } from 'vitest';
import { compareBackupNames, formatBackupName, joinKey, parseBackupName } from '../src/index.ts';

describe('backup names', () => {
  it('formats UTC seconds and the collision suffix', () => {
    const time = new Date('2026-01-02T03:04:05.678Z');
    expect(formatBackupName(time)).toBe('backup_20260102_030405');
    expect(formatBackupName(time, 2)).toBe('backup_20260102_030405_2');
  });

  it('parses only canonical names', () => {
    expect(parseBackupName('backup_20260102_030405')).toMatchObject({ sequence: 0 });
    expect(parseBackupName('backup_20260102_030405_12')).toMatchObject({ sequence: 12 });
    for (const bad of [
      'backup_20261399_000000',
      'backup_20260102_030405_0',
      'backup_20260102_030405_01',
      'x_20260102_030405',
      'backup_2026010_030405',
    ]) {
      expect(parseBackupName(bad), bad).toBeUndefined();
    }
  });

  it('orders by time, then suffix', () => {
    const names = [
      'backup_20260102_030405_1',
      'backup_20260102_030406',
      'backup_20260102_030405',
      'backup_20260102_030405_10',
      'backup_20260102_030405_2',
    ];
    const sorted = names
      .map((name) => parseBackupName(name)!)
      .sort(compareBackupNames)
      .map((parsed) => parsed.name);
    expect(sorted).toEqual([
      'backup_20260102_030405',
      'backup_20260102_030405_1',
      'backup_20260102_030405_2',
      'backup_20260102_030405_10',
      'backup_20260102_030406',
    ]);
  });

  it('joins prefixes', () => {
    expect(joinKey(undefined, 'a')).toBe('a');
    expect(joinKey('/nightly/', 'a')).toBe('nightly/a');
  });
});
