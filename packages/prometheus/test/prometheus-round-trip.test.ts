import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type PrometheusServer, startPrometheus } from '@bk/test-servers';
import { componentRoundTrip } from '@bk/test-suite';
import { describe, it } from 'vitest';
import { prometheus } from '../src/index.ts';
import { emptyDirectory, readTree } from './directory-tree.ts';
import { rawSamples, type SampleWindow, seriesList, waitForSamples } from './prometheus-queries.ts';

const FIXTURE_RULES =
  'groups:\n  - name: fixture\n    interval: 1s\n    rules:\n      - record: bk_fixture_value\n        expr: vector(42)\n';

/**
 * The store is a data dir (served by whichever Prometheus runs on it) plus a config dir; the
 * component backs up from and restores into both. Samples are compared in a fixed window that
 * ends before the backup.
 */
describe('@bk/test-suite componentRoundTrip on PrometheusComponent', () => {
  componentRoundTrip(
    it,
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'bk-prometheus-suite-'));
      const dataDir = join(dir, 'data');
      const configDir = join(dir, 'config');
      await mkdir(join(configDir, 'rules'), { recursive: true });
      // A recording rule writes a sample every second from the start; scrapes only begin after
      // Prometheus' 5 s service-discovery throttle.
      let server: PrometheusServer | undefined = await startPrometheus({
        dataDir,
        ruleFiles: { 'fixture.yml': FIXTURE_RULES },
      });
      const startedAt = Date.now();
      let window: SampleWindow | undefined;
      const component = prometheus({
        url: server.url,
        dataDir,
        configFile: join(configDir, 'prometheus.yml'),
        ruleFiles: ['rules/*.yml'],
        restore: { dataDir, configDir },
      });
      return {
        component,
        async seed() {
          await copyFile(server!.configFile, join(configDir, 'prometheus.yml'));
          await writeFile(join(configDir, 'rules', 'self.yml'), 'groups: []\n');
          await waitForSamples(server!.url, 3, 'bk_fixture_value');
          window = { end: Date.now() - 1_500, seconds: Math.ceil((Date.now() - startedAt) / 1000) + 5 };
        },
        async snapshot() {
          server ??= await startPrometheus({ dataDir, scrapeSelf: false });
          const range = window ?? { end: Date.now(), seconds: 60 };
          return {
            config: await readTree(configDir),
            samples: await rawSamples(server.url, '{__name__=~".+"}', range),
            series: await seriesList(
              server.url,
              '{__name__=~".+"}',
              range.end - range.seconds * 1000,
              range.end,
            ),
          };
        },
        async reset() {
          await server?.stop();
          server = undefined;
          await emptyDirectory(dataDir);
          await emptyDirectory(configDir);
        },
        async cleanup() {
          await server?.stop();
          await rm(dir, { recursive: true, force: true });
        },
      };
    },
    { timeout: 60_000 },
  );
});
