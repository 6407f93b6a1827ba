import { describe, expect, it } from 'vitest';
import { redactUrl } from '../src/redact-url.ts';

describe('redactUrl', () => {
  it('strips user name, password, query and fragment', () => {
    expect(redactUrl('s3://AKIA:secret@bucket/nightly?region=eu-west-1&token=x#frag')).toBe(
      's3://bucket/nightly',
    );
    expect(redactUrl(new URL('https://user:pw@example.com:9000/a/b?sig=abc'))).toBe(
      'https://example.com:9000/a/b',
    );
    expect(redactUrl('az://account@container/prefix?sv=2024&sig=secret')).toBe('az://container/prefix');
  });

  it('leaves URLs without secrets as they are', () => {
    expect(redactUrl('file:///var/backups/bk')).toBe('file:///var/backups/bk');
    expect(redactUrl('gs://bucket/prefix')).toBe('gs://bucket/prefix');
  });

  it('strips the same parts from strings that are not valid URLs', () => {
    const redacted = redactUrl('s3://key:se cret@[bad/path?token=secret');
    expect(redacted).not.toContain('secret');
    expect(redacted).not.toContain('key');
    expect(redactUrl('not a url?password=hunter2')).toBe('not a url');
  });
});
