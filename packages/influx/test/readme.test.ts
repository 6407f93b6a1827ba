import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { backup, ComponentError, MemoryStorage } from '@bk/core';
import { describe, expect, it } from 'vitest';
import { influx } from '../src/index.ts';
import { INFLUX_CAPABILITIES } from '../src/influx-component.ts';

describe('what the README promises', () => {
  it('lists the capability flags every manifest records', async () => {
    const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8');
    const paragraph = readme.slice(readme.indexOf('Capability flags reported to bk'));
    const flags = Object.fromEntries(
      [...paragraph.slice(0, paragraph.indexOf('\n\n')).matchAll(/`(\w+): (true|false)`/g)].map((match) => [
        match[1],
        match[2] === 'true',
      ]),
    );
    expect(flags).toEqual(INFLUX_CAPABILITIES);
  });

  it('names the component and the URL when the HTTP API cannot be reached', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    await new Promise((resolve) => server.close(resolve));
    const metrics = influx({
      name: 'metrics',
      host: '127.0.0.1',
      rpcPort: port,
      httpUrl: `http://127.0.0.1:${port}`,
      username: 'reader',
      password: 'secret',
    });
    const failure = await backup({ storage: new MemoryStorage(), components: [metrics] }).catch(
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(ComponentError);
    const message = (failure as Error).message;
    expect(message).toMatch(
      new RegExp(
        `^metrics: cannot reach the InfluxDB HTTP API at http://127\\.0\\.0\\.1:${port} .*ECONNREFUSED`,
      ),
    );
    expect(message).not.toContain('secret');
  });
});
