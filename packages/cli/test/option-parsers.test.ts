import { InvalidArgumentError } from 'commander';
import { describe, expect, it } from 'vitest';
import { parseCompression, parseDuration, parseLevel, parseReadConcurrency } from '../src/option-parsers.ts';

describe('option parsers', () => {
  it('accepts levels 1–19 (the format checks its own range) and nothing else', () => {
    expect(parseLevel('1')).toBe(1);
    expect(parseLevel('19')).toBe(19);
    for (const bad of ['0', '20', '6.5', 'x', ''])
      expect(() => parseLevel(bad)).toThrow(InvalidArgumentError);
  });

  it('accepts gzip and zstd as the compression', () => {
    expect(parseCompression('gzip')).toBe('gzip');
    expect(parseCompression('zstd')).toBe('zstd');
    expect(() => parseCompression('xz')).toThrow(InvalidArgumentError);
  });

  it('accepts 1–16 ranged requests in flight', () => {
    expect(parseReadConcurrency('1')).toBe(1);
    expect(parseReadConcurrency('16')).toBe(16);
    for (const bad of ['0', '17', '-1', '2x'])
      expect(() => parseReadConcurrency(bad)).toThrow(InvalidArgumentError);
  });

  it('reads durations with a unit into milliseconds', () => {
    expect(parseDuration('0s')).toBe(0);
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('30m')).toBe(1_800_000);
    expect(parseDuration('24h')).toBe(86_400_000);
    expect(parseDuration('7d')).toBe(604_800_000);
    for (const bad of ['', '5', '1.5h', '-1s', 'h', '3w'])
      expect(() => parseDuration(bad)).toThrow(InvalidArgumentError);
  });
});
