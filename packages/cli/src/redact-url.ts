/**
 * A URL as it may be printed: without user name, password, query string or fragment, which is
 * where target URLs carry credentials (`s3://KEY:SECRET@bucket`, `?sig=…`). Accepts strings
 * that are not valid URLs too, and strips the same parts from them textually.
 *
 * @example
 * redactUrl('s3://AKIA:secret@bucket/nightly?region=eu-west-1'); // 's3://bucket/nightly'
 */
export function redactUrl(url: URL | string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return String(url)
      .replace(/[?#].*$/s, '')
      .replace(/^([^:/?#]*:\/\/)[^/]*@/, '$1');
  }
  parsed.username = '';
  parsed.password = '';
  parsed.search = '';
  parsed.hash = '';
  return parsed.href;
}
