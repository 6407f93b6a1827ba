import { waitFor } from '@bk/test-servers';

interface QueryAnswer {
  status: string;
  data: {
    resultType: string;
    result: { metric: Record<string, string>; values?: [number, string][]; value?: [number, string] }[];
  };
}

async function get<T>(url: string): Promise<T> {
  const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status} ${await response.text()}`);
  return (await response.json()) as T;
}

/** The time range whose samples a test compares: `(end - seconds, end]`, end in ms. */
export interface SampleWindow {
  end: number;
  seconds: number;
}

/**
 * The raw samples of every series matching `selector` in `window` (a range-vector instant
 * query), sorted by series, as plain JSON.
 */
export async function rawSamples(url: string, selector: string, window: SampleWindow): Promise<unknown[]> {
  const query = encodeURIComponent(`${selector}[${window.seconds}s]`);
  const answer = await get<QueryAnswer>(
    `${url}/api/v1/query?query=${query}&time=${(window.end / 1000).toFixed(3)}`,
  );
  return answer.data.result
    .map((series) => ({ metric: series.metric, values: series.values ?? [] }))
    .sort((a, b) => (JSON.stringify(a.metric) < JSON.stringify(b.metric) ? -1 : 1));
}

/** The series `/api/v1/series` lists for `match` between `start` and `end` (ms), sorted. */
export async function seriesList(url: string, match: string, start: number, end: number): Promise<unknown[]> {
  const answer = await get<{ data: Record<string, string>[] }>(
    `${url}/api/v1/series?match[]=${encodeURIComponent(match)}&start=${(start / 1000).toFixed(3)}&end=${(end / 1000).toFixed(3)}`,
  );
  return answer.data.map((series) => JSON.stringify(series)).sort();
}

/** Waits until the server holds at least `count` samples of the series `selector` (default `up{job="self"}`). */
export async function waitForSamples(url: string, count: number, selector = 'up{job="self"}'): Promise<void> {
  await waitFor(
    `${count} samples of ${selector} in ${url}`,
    async () => {
      const query = encodeURIComponent(`count_over_time(${selector}[5m])`);
      const answer = await get<QueryAnswer>(`${url}/api/v1/query?query=${query}`);
      return Number(answer.data.result[0]?.value?.[1] ?? 0) >= count;
    },
    30_000,
    200,
  );
}
