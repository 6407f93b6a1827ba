import type { Silence } from '../src/index.ts';

/** Creates a silence; returns its ID. */
export async function createSilence(
  url: string,
  silence: Omit<Silence, 'id' | 'status' | 'updatedAt' | 'createdBy'> & { createdBy?: string },
): Promise<string> {
  const response = await fetch(`${url}/api/v2/silences`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ createdBy: 'bk-test', ...silence }),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`creating a silence: HTTP ${response.status} ${text}`);
  return (JSON.parse(text) as { silenceID: string }).silenceID;
}

/** Expires a silence (`DELETE /api/v2/silence/<id>`). */
export async function expireSilence(url: string, id: string): Promise<void> {
  const response = await fetch(`${url}/api/v2/silence/${id}`, {
    method: 'DELETE',
    signal: AbortSignal.timeout(10_000),
  });
  await response.arrayBuffer();
  if (!response.ok) throw new Error(`expiring ${id}: HTTP ${response.status}`);
}

/** Every silence on the server. */
export async function listSilences(url: string): Promise<Silence[]> {
  const response = await fetch(`${url}/api/v2/silences`, { signal: AbortSignal.timeout(10_000) });
  if (!response.ok) throw new Error(`listing silences: HTTP ${response.status}`);
  return (await response.json()) as Silence[];
}

/** The active and pending silences, without server-assigned fields, sorted by comment. */
export async function liveSilences(url: string): Promise<Silence[]> {
  return (await listSilences(url))
    .filter((silence) => silence.status?.state !== 'expired')
    .sort((a, b) => (a.comment < b.comment ? -1 : 1));
}

/** An ISO time `offsetMs` from now, with milliseconds (as Alertmanager returns times). */
export function isoIn(offsetMs: number): string {
  return new Date(Date.now() + offsetMs).toISOString();
}

/** Matchers in a canonical order, `isEqual` filled in. */
export function canonicalMatchers(silence: Silence): unknown[] {
  return silence.matchers
    .map((matcher) => ({ ...matcher, isEqual: matcher.isEqual ?? true }))
    .sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1));
}
