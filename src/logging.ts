import { mkdirSync, openSync } from "node:fs";
import path from "node:path";
import { Writable } from "node:stream";
import chalk, { Chalk } from "chalk";
import pino, { type DestinationStream, type Logger } from "pino";
import { registerLogFiles } from "./log-flush.js";
import { MIN_SECRET_LENGTH, registerSecrets } from "./secrets.js";
import { terminalSafe } from "./terminal.js";

/** Field names whose values never reach a log line. */
export const REDACT_PATHS = [
  "token",
  "api_key",
  "apiKey",
  "password",
  "secret",
  "secret_token",
  "authorization",
  "*.token",
  "*.api_key",
  "*.password",
  "*.secret",
  "*.authorization",
  "headers.authorization",
  "config.headers.Authorization",
];

/** Options of {@link createLogging}. */
export interface LoggingOptions {
  /** Folder for `bots.log` and `<bot>.log`; undefined writes no files. */
  logDir?: string;
  /** Minimum level written. @defaultValue "info" ("debug" with --verbose) */
  level?: string;
  /** Human-readable lines on stderr. @defaultValue true */
  console?: boolean;
  /** Colour on the console. @defaultValue chalk's detection (honours NO_COLOR) */
  color?: boolean;
  /** Values to scrub from every line wherever they appear (tokens inside URLs, keys in errors). */
  secrets?: Iterable<string>;
  /**
   * Told, once per episode, that a log file cannot be written (a full disk: `ENOSPC`) and again
   * when it can. @defaultValue a line on stderr
   */
  onFileProblem?: (line: string) => void;
}

/**
 * Lines a log file may hold in memory while its disk refuses writes, bytes; beyond it new lines
 * are dropped (sonic-boom `maxLength`), so a full disk never grows the process without bound.
 */
export const LOG_BUFFER_LIMIT = 16 * 1024 * 1024;

/**
 * Loggers of a process: the process log and one per bot. File lines are written synchronously,
 * as they are logged (see {@link createLogging}); the console's through stderr.
 */
export interface Logging {
  /** The process log (`logs/bots.log` and the console). */
  root: Logger;
  /** A bot's logger: its own file plus the process log and console; lines carry `bot`. */
  forBot(bot: string): Logger;
  /** Adds values to scrub (e.g. tokens read later). */
  addSecrets(values: Iterable<string>): void;
  /**
   * Resolves once every line logged so far is in its file: lines are written as they are logged,
   * and whatever sonic-boom still holds goes out through {@link Logging.flushSync} (which skips a
   * file whose last write failed; its waiting lines are lost). Call before exit; the loggers stay
   * usable.
   */
  flush(): Promise<void>;
  /** Writes the buffered lines synchronously: for an exit that cannot wait (`process.exit` in a signal handler). */
  flushSync(): void;
}

type FileDestination = ReturnType<typeof pino.destination>;

/**
 * File destinations whose last write failed (full disk...). sonic-boom's `flushSync` retries such
 * a write forever (it sleeps and tries again on every error, not just EAGAIN), so an exit must
 * not call it on them: their waiting lines are lost, the exit goes on.
 */
const failingFiles = new WeakSet<FileDestination>();

/**
 * Sets up pino JSON-line logging (docs/architecture.md, "Operations"): `logs/bots.log` for the process, `logs/<bot>.log`
 * per bot, plus a coloured console. Secret fields are redacted by name and secret values are
 * scrubbed from the serialised line, so a token inside an error's URL never lands in a file.
 */
export function createLogging(options: LoggingOptions = {}): Logging {
  const level = options.level ?? "info";
  const secrets = new Set<string>();
  const addSecrets = (values: Iterable<string>) => {
    const list = [...values];
    for (const v of list) if (v && v.length >= MIN_SECRET_LENGTH) secrets.add(v);
    // Stored failure reasons are scrubbed of the same values (src/secrets.ts).
    registerSecrets(list);
  };
  addSecrets(options.secrets ?? []);
  const scrub = (line: string): string => {
    let out = line;
    for (const s of secrets) if (out.includes(s)) out = out.split(s).join("[REDACTED]");
    return out;
  };
  const files: Array<ReturnType<typeof pino.destination>> = [];
  const tell = options.onFileProblem ?? ((line: string) => process.stderr.write(`${line}\n`));
  const fileStream = (name: string): DestinationStream | undefined => {
    if (!options.logDir) return undefined;
    mkdirSync(options.logDir, { recursive: true });
    // Each line is written to the file (one write(2) into the page cache) before the log call
    // returns: `bots logs tail -f` follows a running bot live and a kill -9 loses no line logged.
    // pino's default; an asynchronous write cost some 30 µs of CPU more a line and file (the
    // thread pool's hand-off, 2026-12-06: 101–104 µs against 41–47 µs for a line to two files,
    // 3,000 lines 1 ms apart; about 6% of a message).
    // Opened here, synchronously: the stream is ready at once, so an exit right after start
    // can still flush it.
    const file = path.join(options.logDir, name);
    const dest = pino.destination({ dest: openSync(file, "a"), sync: true, maxLength: LOG_BUFFER_LIMIT });
    // A write that fails (full disk, I/O error) must not become an unhandled 'error' event that
    // ends the process: say so once, keep the lines buffered (up to the limit) and write them
    // when a later line finds the disk writable again.
    // pino flushes each destination synchronously at process exit; on a failing file that call
    // would never return (see failingFiles), so the process could not exit.
    const flushSync = dest.flushSync.bind(dest);
    dest.flushSync = () => {
      if (!failingFiles.has(dest)) flushSync();
    };
    dest.on("error", (err: NodeJS.ErrnoException) => {
      if (failingFiles.has(dest)) return;
      failingFiles.add(dest);
      tell(`bots: cannot write ${file} (${err.code ?? err.message}); its lines wait in memory (up to 16 MiB) until it can be written`);
    });
    dest.on("write", () => {
      if (!failingFiles.delete(dest)) return;
      tell(`bots: ${file} is written again`);
    });
    files.push(dest);
    return dest;
  };
  const processFile = fileStream("bots.log");
  const consoleStream = options.console === false ? undefined : prettyStream(process.stderr, options.color ?? chalk.level > 0);
  const make = (streams: Array<DestinationStream | undefined>, bindings: Record<string, unknown>): Logger => {
    const targets = streams.filter((s): s is DestinationStream => s !== undefined).map((stream) => ({ stream, level: level as pino.Level }));
    return pino(
      {
        level,
        base: bindings,
        redact: { paths: REDACT_PATHS, censor: "[REDACTED]" },
        timestamp: pino.stdTimeFunctions.isoTime,
        hooks: { streamWrite: scrub },
        serializers: { err: serializeError },
        formatters: { level: (label) => ({ level: label }) },
      },
      targets.length ? pino.multistream(targets) : new Writable({ write: (_c, _e, cb) => cb() }),
    );
  };
  const root = make([processFile, consoleStream], {});
  const bots = new Map<string, Logger>();
  const logging: Logging = {
    root,
    addSecrets,
    forBot(bot) {
      let l = bots.get(bot);
      if (!l) bots.set(bot, (l = make([fileStream(`${bot}.log`), processFile, consoleStream], { bot })));
      return l;
    },
    async flush() {
      logging.flushSync();
    },
    flushSync() {
      for (const f of files) {
        if (failingFiles.has(f)) continue;
        try {
          f.flushSync();
        } catch {
          // A file that cannot be written (or is closed) loses its lines either way; the exit
          // must not stop on it.
        }
      }
    },
  };
  registerLogFiles(logging);
  return logging;
}

/**
 * pino's error serializer, with a message that names each cause once: pino joins the messages of
 * the whole `cause` chain, and our errors already quote their cause (`Bot API … is unreachable:
 * getMe: request … failed`), which printed the same reason three times.
 */
function serializeError(error: unknown): unknown {
  const out = pino.stdSerializers.err(error as Error) as unknown;
  if (!(error instanceof Error) || out === null || typeof out !== "object") return out;
  let message = error.message;
  const seen = new Set<unknown>([error]);
  for (let cause = error.cause; cause instanceof Error && !seen.has(cause); cause = cause.cause) {
    seen.add(cause);
    if (cause.message && !message.includes(cause.message)) message += `: ${cause.message}`;
  }
  return Object.assign(out, { message });
}

const LEVEL_NUM: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };

/**
 * Formats one pino JSON line for people: `HH:MM:SS LEVEL bot thread message key=value`.
 * Lines that are not JSON are returned as they are.
 */
export function formatLogLine(line: string, color: boolean): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return terminalSafe(line);
  }
  // What users wrote (texts, names) is in these fields: inert before our own colours go on.
  const safe = (v: unknown) => terminalSafe(typeof v === "string" ? v : (JSON.stringify(v) ?? String(v)));
  const c = new Chalk({ level: color ? 1 : 0 });
  const lvl = typeof o.level === "number" ? (Object.keys(LEVEL_NUM).find((k) => LEVEL_NUM[k] === o.level) ?? String(o.level)) : String(o.level ?? "info");
  const paint = lvl === "error" || lvl === "fatal" ? c.red : lvl === "warn" ? c.yellow : lvl === "debug" || lvl === "trace" ? c.gray : c.green;
  const time = typeof o.time === "string" ? o.time.slice(11, 19) : typeof o.time === "number" ? new Date(o.time).toISOString().slice(11, 19) : "";
  const skip = new Set(["level", "time", "msg", "bot", "thread_key", "pid", "hostname", "err"]);
  const extras = Object.entries(o)
    .filter(([k]) => !skip.has(k))
    .map(([k, v]) => `${c.gray(terminalSafe(k))}=${safe(v)}`)
    .join(" ");
  const err = o.err as { message?: string; type?: string } | undefined;
  return [
    c.gray(safe(time)),
    paint(safe(lvl.toUpperCase().padEnd(5))),
    o.bot ? c.cyan(safe(o.bot)) : "",
    o.thread_key ? c.magenta(safe(o.thread_key)) : "",
    safe(o.msg ?? ""),
    extras,
    err?.message ? c.red(safe(`(${err.type ?? "Error"}: ${err.message})`)) : "",
  ]
    .filter(Boolean)
    .join(" ");
}

/** A pino destination that prints readable, coloured lines to a TTY stream. */
function prettyStream(out: NodeJS.WritableStream, color: boolean): DestinationStream {
  return {
    write(chunk: string) {
      for (const line of chunk.split("\n")) if (line) out.write(`${formatLogLine(line, color)}\n`);
    },
  };
}
