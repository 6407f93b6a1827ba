import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type AlertmanagerServer, startAlertmanager } from '@bk/test-servers';
import { componentRoundTrip } from '@bk/test-suite';
import { describe, it } from 'vitest';
import { alertmanager } from '../src/index.ts';
import { canonicalMatchers, createSilence, expireSilence, isoIn, liveSilences } from './alertmanager-api.ts';
import { emptyDirectory, readTree } from './directory-tree.ts';

/** The store is an Alertmanager's live silences plus a config dir. */
describe('@bk/test-suite componentRoundTrip on AlertmanagerComponent', () => {
  componentRoundTrip(
    it,
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'bk-alertmanager-suite-'));
      const server: AlertmanagerServer = await startAlertmanager();
      const configFile = join(dir, 'alertmanager.yml');
      return {
        component: alertmanager({ url: server.url, configFile, restore: { configDir: dir } }),
        async seed() {
          await copyFile(server.configFile, configFile);
          await createSilence(server.url, {
            matchers: [{ name: 'instance', value: 'web-[0-9]+', isRegex: true }],
            startsAt: isoIn(0),
            endsAt: isoIn(3_600_000),
            comment: 'active',
          });
          await createSilence(server.url, {
            matchers: [
              { name: 'alertname', value: 'Deploy', isRegex: false },
              { name: 'team', value: 'ops', isRegex: false, isEqual: false },
            ],
            startsAt: isoIn(600_000),
            endsAt: isoIn(4_200_000),
            createdBy: 'carol',
            comment: 'pending',
          });
        },
        async snapshot() {
          const silences = (await liveSilences(server.url)).map((silence) => ({
            matchers: canonicalMatchers(silence),
            comment: silence.comment,
            createdBy: silence.createdBy,
            endsAt: silence.endsAt,
            // An active silence's start becomes the restore time; a pending one keeps its own.
            ...(silence.status?.state === 'pending' ? { startsAt: silence.startsAt } : {}),
          }));
          return { silences, config: await readTree(dir) };
        },
        async reset() {
          for (const silence of await liveSilences(server.url)) await expireSilence(server.url, silence.id!);
          await emptyDirectory(dir);
        },
        async cleanup() {
          await server.stop();
          await rm(dir, { recursive: true, force: true });
        },
      };
    },
    { timeout: 60_000 },
  );
});
