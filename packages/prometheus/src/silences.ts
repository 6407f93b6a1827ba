import { ComponentError, isRecord } from '@bk/core';

/** A silence matcher as Alertmanager's API v2 has it. */
export interface SilenceMatcher {
  name: string;
  value: string;
  isRegex: boolean;
  /** `false` for `!=` / `!~`; absent means `true`. */
  isEqual?: boolean;
}

/** A silence as `GET /api/v2/silences` returns it. */
export interface Silence {
  id?: string;
  status?: { state?: string };
  updatedAt?: string;
  matchers: SilenceMatcher[];
  startsAt: string;
  endsAt: string;
  createdBy: string;
  comment: string;
}

/** What `POST /api/v2/silences` takes to create a silence: no `id`, `status` or `updatedAt`. */
export interface PostableSilence {
  matchers: SilenceMatcher[];
  startsAt: string;
  endsAt: string;
  createdBy: string;
  comment: string;
}

/** What {@link planSilences} decided for each silence of a backup. */
export interface SilencePlan {
  /** Still active or pending, and not on the target yet: to be created. */
  create: PostableSilence[];
  /** Expired in the backup, or their `endsAt` has passed by now. */
  expired: Silence[];
  /** An equal silence is already active or pending on the target. */
  existing: Silence[];
}

/**
 * Checks a parsed `silences.json`: an array of silences with matchers and times.
 *
 * @throws {ComponentError} naming the first malformed silence.
 */
export function parseSilences(value: unknown, component: string): Silence[] {
  if (!Array.isArray(value)) throw new ComponentError(component, 'silences.json is not a JSON array.');
  value.forEach((silence, index) => {
    const ok =
      isRecord(silence) &&
      Array.isArray(silence.matchers) &&
      silence.matchers.every(
        (matcher) =>
          isRecord(matcher) &&
          typeof matcher.name === 'string' &&
          typeof matcher.value === 'string' &&
          typeof matcher.isRegex === 'boolean' &&
          (matcher.isEqual === undefined || typeof matcher.isEqual === 'boolean'),
      ) &&
      typeof silence.startsAt === 'string' &&
      Number.isFinite(Date.parse(silence.startsAt)) &&
      typeof silence.endsAt === 'string' &&
      Number.isFinite(Date.parse(silence.endsAt)) &&
      typeof silence.createdBy === 'string' &&
      typeof silence.comment === 'string';
    if (!ok) throw new ComponentError(component, `silences.json: silence #${index} is malformed.`);
  });
  return value as Silence[];
}

/** The silence without its server-assigned `id`, `status` and `updatedAt`. */
export function toPostable(silence: Silence): PostableSilence {
  return {
    matchers: silence.matchers.map((matcher) => ({
      name: matcher.name,
      value: matcher.value,
      isRegex: matcher.isRegex,
      isEqual: matcher.isEqual ?? true,
    })),
    startsAt: silence.startsAt,
    endsAt: silence.endsAt,
    createdBy: silence.createdBy,
    comment: silence.comment,
  };
}

function matcherKey(matchers: readonly SilenceMatcher[]): string {
  return JSON.stringify(
    matchers.map((matcher) => [matcher.name, matcher.value, matcher.isRegex, matcher.isEqual ?? true]).sort(),
  );
}

/** Whether a silence is expired at `now`: its state says so, or its `endsAt` has passed. */
export function isExpired(silence: Silence, now: number): boolean {
  return silence.status?.state === 'expired' || Date.parse(silence.endsAt) <= now;
}

/**
 * Whether `existing` (on the target) is the same silence as `backedUp`: equal matchers (as a
 * set), comment and `endsAt`, and the same `startsAt` — or, for a silence that had started by
 * `now`, a later `startsAt` no later than `now`, because Alertmanager moves a past `startsAt` of
 * a new silence to the moment it is created.
 */
export function isSameSilence(backedUp: Silence, existing: Silence, now: number): boolean {
  if (matcherKey(backedUp.matchers) !== matcherKey(existing.matchers)) return false;
  if (backedUp.comment !== existing.comment) return false;
  if (Date.parse(backedUp.endsAt) !== Date.parse(existing.endsAt)) return false;
  const wanted = Date.parse(backedUp.startsAt);
  const found = Date.parse(existing.startsAt);
  return found === wanted || (wanted < now && found > wanted && found <= now);
}

/**
 * Decides which backed-up silences to create on a target that holds `target`: expired ones are
 * left out, as are those an active or pending silence on the target already equals
 * ({@link isSameSilence}), so restoring twice creates nothing the second time.
 */
export function planSilences(
  backedUp: readonly Silence[],
  target: readonly Silence[],
  now: number,
): SilencePlan {
  const live = target.filter((silence) => !isExpired(silence, now));
  const plan: SilencePlan = { create: [], expired: [], existing: [] };
  for (const silence of backedUp) {
    if (isExpired(silence, now)) plan.expired.push(silence);
    else if (live.some((other) => isSameSilence(silence, other, now))) plan.existing.push(silence);
    else plan.create.push(toPostable(silence));
  }
  return plan;
}
