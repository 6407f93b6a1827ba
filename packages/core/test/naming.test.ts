import { describe, expect, it } from 'vitest';
import { compareBackupNames, formatBackupName, joinKey, parseBackupName } from '../src/index.ts';
import { uniqueRunSequence } from '../src/naming.ts';

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

  it('makes run numbers that parse, differ, and order after _N and by millisecond', () => {
    const early = new Date('2026-01-02T03:04:05.007Z');
    const late = new Date('2026-01-02T03:04:05.990Z');
    const names = Array.from({ length: 50 }, () => formatBackupName(early, uniqueRunSequence(early)));
    expect(new Set(names).size).toBe(50);
    for (const name of names) {
      expect(name).toMatch(/^backup_20260102_030405_1007\d{12}$/);
      expect(parseBackupName(name)?.name).toBe(name);
    }
    const later = parseBackupName(formatBackupName(late, uniqueRunSequence(late)))!;
    const second = parseBackupName('backup_20260102_030405_2')!;
    const sorted = [later, parseBackupName(names[0]!)!, second].sort(compareBackupNames);
    expect(sorted.map((parsed) => parsed.name)).toEqual([second.name, names[0], later.name]);
  });

  it('joins prefixes', () => {
    expect(joinKey(undefined, 'a')).toBe('a');
    expect(joinKey('/nightly/', 'a')).toBe('nightly/a');
  });
});
