import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '@bk/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createComponentRegistry } from '../src/component-registry.ts';
import { loadConfig, parseConfig } from '../src/load-config.ts';
import { toTargetUrl } from '../src/target-url.ts';

let directory: string;

beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'bk-cli-config-'));
});

afterAll(async () => {
  await rm(directory, { recursive: true, force: true });
});

function configError(run: () => unknown): ConfigError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('toTargetUrl', () => {
  it('keeps URLs and turns paths into file URLs against the base directory', () => {
    expect(toTargetUrl('s3://bucket/x', '/etc/bk', 'target').href).toBe('s3://bucket/x');
    expect(toTargetUrl('file:///var/backups', '/etc/bk', 'target').href).toBe('file:///var/backups');
    expect(toTargetUrl('backups', '/etc/bk', 'target').href).toBe('file:///etc/bk/backups');
    expect(toTargetUrl('../b', '/etc/bk', 'target').href).toBe('file:///etc/b');
    expect(toTargetUrl('/srv/backups', '/etc/bk', 'target').href).toBe('file:///srv/backups');
  });

  it('rejects empty and invalid values without printing secrets', () => {
    expect(configError(() => toTargetUrl(' ', '/', '--target')).message).toContain('--target');
    const message = configError(() => toTargetUrl('s3://key:secret@[x', '/', 'target')).message;
    expect(message).not.toContain('secret');
  });

  it('says a file: URL cannot carry a user or password, without printing them', () => {
    const error = configError(() => toTargetUrl('file://user:pass@localhost/var/backups', '/', '--target'));
    expect(error.message).toBe(
      '--target "file://localhost/var/backups" carries a user name or password, which a file: URL cannot hold: a file: target is a local directory, written as file:///absolute/path.',
    );
  });
});

describe('parseConfig', () => {
  it('resolves relative paths of files components against the config directory', () => {
    const config = parseConfig(
      {
        target: 'backups',
        prefix: 'nightly',
        components: [
          { kind: 'files', name: 'app', paths: ['data', '/abs'], restoreTo: 'restored' },
          { kind: 'files', name: 'rooted', root: 'srv', paths: ['config', '/srv/other'] },
          { kind: 'influx', name: 'metrics', url: 'http://localhost:8086', paths: ['untouched'] },
        ],
        retention: { keepLast: 7, keepDaily: 3 },
      },
      '/etc/bk',
      '/etc/bk/bk.config.json',
    );
    expect(config.target?.href).toBe('file:///etc/bk/backups');
    expect(config.prefix).toBe('nightly');
    expect(config.components[0]).toEqual({
      kind: 'files',
      name: 'app',
      paths: ['/etc/bk/data', '/abs'],
      restoreTo: '/etc/bk/restored',
    });
    expect(config.components[1]).toMatchObject({
      root: '/etc/bk/srv',
      paths: ['/etc/bk/srv/config', '/srv/other'],
    });
    expect(config.components[2]).toEqual({
      kind: 'influx',
      name: 'metrics',
      url: 'http://localhost:8086',
      paths: ['untouched'],
    });
    expect(config.retention).toEqual({ keepLast: 7, keepDaily: 3 });
  });

  it('names the invalid field', () => {
    const parse = (value: unknown) => () => parseConfig(value, '/etc/bk', 'bk.config.json');
    expect(configError(parse([])).message).toContain('must be a JSON object');
    expect(configError(parse({ componets: [] })).message).toContain('componets');
    expect(configError(parse({ target: 5 })).message).toContain('target');
    expect(configError(parse({ prefix: [] })).message).toContain('prefix');
    expect(configError(parse({ components: {} })).message).toContain('components must be an array');
    expect(configError(parse({ components: [{ name: 'x' }] })).message).toContain('components[0].kind');
    expect(configError(parse({ components: [{ kind: '../evil' }] })).message).toContain('components[0].kind');
    expect(configError(parse({ components: [{ kind: 'files', paths: 'x' }] })).message).toContain(
      'components[0].paths',
    );
    expect(configError(parse({ components: [{ kind: 'files', paths: ['a'], root: 3 }] })).message).toContain(
      'components[0].root',
    );
    expect(configError(parse({ retention: { keepLast: -1 } })).message).toContain('retention.keepLast');
    expect(configError(parse({ retention: { keepHourly: 1 } })).message).toContain('retention.keepHourly');
  });

  it('resolves encryption.passphraseFile and refuses it beside recipients', () => {
    const parse = (encryption: unknown) => parseConfig({ encryption }, '/etc/bk', 'bk.config.json');
    expect(parse({ passphraseFile: 'pass.txt' }).encryption).toEqual({ passphraseFile: '/etc/bk/pass.txt' });
    expect(configError(() => parse({ passphraseFile: '' })).message).toContain('encryption.passphraseFile');
    const recipient = 'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p';
    expect(
      configError(() => parse({ passphraseFile: 'pass.txt', recipients: [recipient] })).message,
    ).toContain('both recipients and passphraseFile');
  });
});

describe('loadConfig', () => {
  it('reads ./bk.config.json when present and an empty config otherwise', async () => {
    const empty = await loadConfig({ cwd: directory });
    expect(empty).toMatchObject({ file: undefined, directory, components: [], target: undefined });
    await writeFile(join(directory, 'bk.config.json'), JSON.stringify({ target: 'out' }));
    const found = await loadConfig({ cwd: directory });
    expect(found.file).toBe(join(directory, 'bk.config.json'));
    expect(found.target?.href).toBe(`file://${directory}/out`);
  });

  it('requires an explicit --config file to exist and be JSON', async () => {
    await expect(loadConfig({ file: 'missing.json', cwd: directory })).rejects.toThrow(/does not exist/);
    await writeFile(join(directory, 'broken.json'), '{ "target": ');
    await expect(loadConfig({ file: 'broken.json', cwd: directory })).rejects.toThrow(/not valid JSON/);
  });
});

describe('the README', () => {
  it("shows a config file that loads, every component of it built by its package's fromConfig", async () => {
    const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8');
    const section = readme.slice(readme.indexOf('## Config file'));
    const block = /```json\n([\s\S]*?)```/.exec(section)?.[1];
    expect(block).toBeDefined();
    const config = parseConfig(JSON.parse(block!), directory, 'bk.config.json');
    const registry = createComponentRegistry();
    const built = await Promise.all(config.components.map((component) => registry.create(component)));
    expect(built.map((component) => `${component.kind}:${component.name}`)).toEqual([
      'files:haproxy',
      'files:app',
      'influx:metrics',
    ]);
  });
});
