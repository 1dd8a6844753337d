// Cron for mode Scheduled: node-cron parses and validates the expression; the next run after a
// given time is computed here (in UTC), because the controller schedules by requeueing its work
// queue rather than by running timers per Replication.
import { parse, validateDetailed } from 'node-cron';

const MACROS: Record<string, string> = {
  '@yearly': '0 0 1 1 *', '@annually': '0 0 1 1 *', '@monthly': '0 0 1 * *', '@weekly': '0 0 * * 0',
  '@daily': '0 0 * * *', '@midnight': '0 0 * * *', '@hourly': '0 * * * *',
};

export interface CronSchedule {
  minutes: Set<number>;
  hours: Set<number>;
  daysOfMonth: Set<number>;
  months: Set<number>;
  daysOfWeek: Set<number>;
  /** Cron's rule: when both day fields are restricted, either may match. */
  domRestricted: boolean;
  dowRestricted: boolean;
}

const nums = (xs: (number | string)[]): Set<number> => new Set(xs.map(Number).filter((n) => Number.isInteger(n)));

/** Parses a 5-field expression or a macro; throws an Error a user can act on. */
export function parseCron(expr: string): CronSchedule {
  const e = MACROS[expr.trim()] ?? expr.trim();
  if (e.split(/\s+/).length !== 5) throw new Error(`schedule "${expr}" must have 5 fields (minute hour day-of-month month day-of-week) or be a macro such as @hourly`);
  const v = validateDetailed(e);
  if (!v.valid) throw new Error(`schedule "${expr}" is not a valid cron expression: ${v.errors.map((x) => `${x.field}: ${x.message}`).join('; ')}`);
  const f = parse(e);
  const dows = nums(f.dayOfWeek);
  if (dows.has(7)) dows.add(0);
  return {
    minutes: nums(f.minute), hours: nums(f.hour), daysOfMonth: nums(f.dayOfMonth), months: nums(f.month), daysOfWeek: dows,
    domRestricted: f.dayOfMonth.length < 31, dowRestricted: dows.size < 7,
  };
}

function dayMatches(s: CronSchedule, d: Date): boolean {
  const dom = s.daysOfMonth.has(d.getUTCDate());
  const dow = s.daysOfWeek.has(d.getUTCDay());
  if (s.domRestricted && s.dowRestricted) return dom || dow;
  return dom && dow;
}

/** The first scheduled minute strictly after `after` (UTC), or undefined if none within 5 years. */
export function nextRun(s: CronSchedule, after: Date): Date | undefined {
  const t = new Date(after.getTime());
  t.setUTCSeconds(0, 0);
  t.setUTCMinutes(t.getUTCMinutes() + 1);
  const limit = after.getTime() + 5 * 366 * 24 * 3600_000;
  while (t.getTime() <= limit) {
    if (!s.months.has(t.getUTCMonth() + 1)) {
      t.setUTCMonth(t.getUTCMonth() + 1, 1);
      t.setUTCHours(0, 0);
      continue;
    }
    if (!dayMatches(s, t)) {
      t.setUTCDate(t.getUTCDate() + 1);
      t.setUTCHours(0, 0);
      continue;
    }
    if (!s.hours.has(t.getUTCHours())) {
      t.setUTCHours(t.getUTCHours() + 1, 0);
      continue;
    }
    if (!s.minutes.has(t.getUTCMinutes())) {
      t.setUTCMinutes(t.getUTCMinutes() + 1);
      continue;
    }
    return t;
  }
  return undefined;
}

/** A Go-style duration ("720h", "1h30m", "500ms") in milliseconds; the fallback when unset or zero. */
export const parseDuration = (d: string | undefined, fallbackMs: number): number => {
  if (!d) return fallbackMs;
  let ms = 0;
  for (const m of d.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) ms += Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  return ms || fallbackMs;
};

/** A duration for status, as "1.25s" or "42.0s". */
export const seconds = (ms: number): string => `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)}s`;
