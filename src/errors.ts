/**
 * Typed errors of `bots`. Every error an operator may see is a {@link BotsError} with a string
 * `code`, an optional one-line `hint` (what to do) and the underlying `cause`.
 */

/** Options shared by every {@link BotsError}. */
export interface BotsErrorOptions {
  /** The error that caused this one (kept for `--verbose` and logs). */
  cause?: unknown;
  /** One line telling the operator what to do about it. */
  hint?: string;
}

/** Base class of all errors raised by `bots`. */
export class BotsError extends Error {
  /** Machine-readable code, e.g. `CONFIG_INVALID`, `LLM_UNAVAILABLE`. */
  readonly code: string;
  /** One line telling the operator what to do, if known. */
  readonly hint?: string;

  constructor(code: string, message: string, options: BotsErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.hint = options.hint;
  }

  /** JSON shape used by `--json` output: `{ error, code, message, hint? }`. */
  toJSON(): { error: string; code: string; message: string; hint?: string } {
    return { error: this.name, code: this.code, message: this.message, ...(this.hint ? { hint: this.hint } : {}) };
  }
}

/** A bot YAML, `.env` or prompt file is wrong. Exit code 2. */
export class ConfigError extends BotsError {}
/** The command line itself is wrong (bad amount, unknown target). Exit code 2. */
export class UsageError extends BotsError {}
/** The database is unreachable or a query failed. */
export class StorageError extends BotsError {}

/**
 * Scale-out fencing: a write carried an owner's epoch (`bot_owners`) that is no longer current,
 * because another instance took the bot over (this one was paused or cut off past its lease).
 * Nothing was written; code `FENCED`.
 */
export class FencedError extends StorageError {
  constructor(
    readonly bot: string,
    readonly epoch: number,
  ) {
    super("FENCED", `bot ${bot}: this instance no longer owns it at epoch ${epoch}; write refused`);
  }
}
/** A channel API (Telegram, VK, 2GIS) refused or failed a call. */
export class ChannelError extends BotsError {
  /** HTTP status or API error code, when the channel gave one. */
  readonly status?: number;
  /** Seconds the API asked us to wait (Bot API `retry_after`, HTTP `Retry-After`). */
  readonly retryAfterS?: number;
  constructor(code: string, message: string, options: BotsErrorOptions & { status?: number; retryAfterS?: number } = {}) {
    super(code, message, options);
    this.status = options.status;
    this.retryAfterS = options.retryAfterS;
  }
}
/**
 * Thrown when a send may have reached the channel: the request was written and then the
 * connection failed (reset, timeout) before an answer came. Never retried; the answer becomes
 * `unconfirmed` (the charge stands). `part` is the 0-based part whose fate is unknown.
 */
export class UnconfirmedSendError extends ChannelError {
  constructor(
    method: string,
    readonly part: number,
    cause: unknown,
  ) {
    super(
      "SEND_UNCONFIRMED",
      `${method}: the connection failed after the request was sent; it may have arrived (${(cause as Error)?.message ?? String(cause)})`,
      { cause },
    );
    this.name = "UnconfirmedSendError";
  }
}
/** The model API failed (after retries) or answered something unusable. */
export class LlmError extends BotsError {
  readonly status?: number;
  constructor(code: string, message: string, options: BotsErrorOptions & { status?: number } = {}) {
    super(code, message, options);
    this.status = options.status;
  }
}
/** A balance operation was refused. */
export class BalanceError extends BotsError {}

/**
 * Thrown by commands after they printed what went wrong; only the CLI entry point turns it
 * into `process.exit`. Codes: 0 ok, 1 runtime failure, 2 usage or configuration error.
 */
export class ExitError extends Error {
  constructor(
    readonly exitCode: number,
    message = `exit ${exitCode}`,
  ) {
    super(message);
    this.name = "ExitError";
  }
}

/** Short description of any thrown value, for logs and `failed` reasons. */
export function describeError(error: unknown): string {
  if (error instanceof BotsError) return `${error.code}: ${error.message}`;
  if (error instanceof Error) return error.message;
  return String(error);
}
