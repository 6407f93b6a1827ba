import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { backup, ComponentError, ConfigError, inspect, MemoryStorage, type Source } from '../src/index.ts';

/** A port on loopback that nothing listens on: bound, then closed. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('errors name what is at fault', () => {
  it('names the component whose endpoint cannot be reached', async () => {
    const url = `http://127.0.0.1:${await closedPort()}/ping`;
    const unreachable: Source = {
      kind: 'test',
      name: 'metrics',
      describe: async (context) => {
        await fetch(url, { signal: context.signal });
        return {};
      },
      backup: async function* () {},
    };
    const failure = await backup({ storage: new MemoryStorage(), components: [unreachable] }).catch(
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(ComponentError);
    expect((failure as ComponentError).component).toBe('metrics');
    expect((failure as Error).message).toMatch(/^metrics: fetch failed \(.*ECONNREFUSED/);
  });

  it('refuses a malformed backup name as a usage error, not as a missing backup', async () => {
    const failure = await inspect({ storage: new MemoryStorage(), name: 'backup_2026' }).catch(
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(ConfigError);
    expect((failure as Error).message).toContain('"backup_2026" is not a backup name');
  });
});
