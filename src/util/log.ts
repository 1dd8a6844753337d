// One pino logger for the whole process: JSON lines by default (what log pipelines want),
// pretty output when a person is watching a terminal. Level from --log-level or LOG_LEVEL.
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

const LEVELS: readonly LevelWithSilent[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function parseLevel(value: string | undefined, fallback: LevelWithSilent = 'info'): LevelWithSilent {
  if (value === undefined || value === '') return fallback;
  const v = value.toLowerCase();
  if ((LEVELS as readonly string[]).includes(v)) return v as LevelWithSilent;
  throw new Error(`unknown log level "${value}": use one of ${LEVELS.join(', ')}`);
}

export interface LogOptions {
  level?: string;
  /** Force pretty (true) or JSON (false); default: pretty when stderr is a TTY and LOG_FORMAT is not "json". */
  pretty?: boolean;
  name?: string;
}

export function createLogger(opts: LogOptions = {}): Logger {
  const level = parseLevel(opts.level ?? process.env.LOG_LEVEL);
  const pretty = opts.pretty ?? (process.stderr.isTTY === true && process.env.LOG_FORMAT !== 'json');
  const base = { name: opts.name ?? 'dr-syncer', level };
  if (pretty) {
    return pino({ ...base, transport: { target: 'pino-pretty', options: { destination: 2, colorize: true } } });
  }
  return pino(base, pino.destination({ fd: 2, sync: true }));
}

/** A logger that discards everything, for library code called without one. */
export const silentLogger: Logger = pino({ level: 'silent' });
