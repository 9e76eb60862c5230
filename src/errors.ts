/**
 * One error hierarchy with stable string codes. Messages say what happened and what to do next;
 * the CLI maps codes to exit codes (see docs/exit-codes.md).
 */
export type ErrorCode =
  | 'USAGE'
  | 'CONFIG'
  | 'CONNECT_FAILED'
  | 'PREFLIGHT_FAILED'
  | 'DONOR_LOCK_TIMEOUT'
  | 'DONOR_LOCK_TOO_LONG'
  | 'SNAPSHOT_FAILED'
  | 'COPY_FAILED'
  | 'REPLICATION_FAILED'
  | 'CATCHUP_TIMEOUT'
  | 'CHECKSUM_MISMATCH'
  | 'VERIFY_FAILED'
  | 'STATE_DIFFERS'
  | 'ABORTED'
  | 'JOURNAL'
  | 'SANDBOX'
  | 'EXEC_FAILED'
  | 'NO_MANIFEST'
  | 'TRANSPORT_FAILED'
  | 'TRANSPORT_AUTH_FAILED'
  | 'AGENT'
  | 'NOT_FOUND'
  | 'INTERNAL';

export class ReseedError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  /** Extra lines for the operator (what state things are in, what to do). */
  readonly hints: string[];

  constructor(
    code: ErrorCode,
    message: string,
    options: { cause?: unknown; retryable?: boolean; hints?: string[] } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ReseedError';
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.hints = options.hints ?? [];
  }
}

/** Exit codes are part of the CLI contract; keep docs/exit-codes.md in step. */
export const EXIT_CODES: Record<ErrorCode, number> = {
  USAGE: 2,
  CONFIG: 2,
  CONNECT_FAILED: 3,
  PREFLIGHT_FAILED: 4,
  DONOR_LOCK_TIMEOUT: 5,
  DONOR_LOCK_TOO_LONG: 5,
  SNAPSHOT_FAILED: 5,
  COPY_FAILED: 6,
  REPLICATION_FAILED: 7,
  CATCHUP_TIMEOUT: 7,
  CHECKSUM_MISMATCH: 8,
  VERIFY_FAILED: 8,
  STATE_DIFFERS: 11,
  ABORTED: 130,
  JOURNAL: 9,
  SANDBOX: 10,
  EXEC_FAILED: 10,
  NO_MANIFEST: 12,
  TRANSPORT_FAILED: 6,
  TRANSPORT_AUTH_FAILED: 3,
  AGENT: 13,
  NOT_FOUND: 2,
  INTERNAL: 1,
};

export function isReseedError(err: unknown): err is ReseedError {
  return err instanceof ReseedError;
}

/** The abort reason as a ReseedError, so a Ctrl-C reads the same wherever it lands. */
export function abortError(signal: AbortSignal): ReseedError {
  const reason: unknown = signal.reason;
  if (reason instanceof ReseedError) return reason;
  return new ReseedError('ABORTED', 'interrupted', { cause: reason });
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal);
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
