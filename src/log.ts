import pino from 'pino';
import type { Logger } from 'pino';

export type { Logger };

/**
 * Logs go to stderr (or a file) as JSON lines. Anything named like a secret is redacted, as a
 * second line of defence: secrets are never put in log fields on purpose.
 */
export function createLogger(options: { level?: string; destination?: number | string } = {}): Logger {
  const destination = pino.destination({ dest: options.destination ?? 2, sync: true });
  return pino(
    {
      level: options.level ?? process.env.RESEED_LOG_LEVEL ?? 'warn',
      redact: {
        paths: ['password', '*.password', '*.*.password'],
        censor: '[redacted]',
      },
      base: undefined,
    },
    destination,
  );
}

export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
