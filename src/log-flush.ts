/**
 * The log files of the process, for the exit paths (src/cli/main.ts, runCli). Kept apart from
 * src/logging.ts so a command that never logs does not load pino to exit.
 */

/** What an exit needs of a set of log files (a `Logging`). */
export interface Flushable {
  /** Resolves once every line logged so far is in its file. */
  flush(): Promise<void>;
  /** Writes buffered lines synchronously. */
  flushSync(): void;
}

const open = new Set<Flushable>();

/** Registers a set of log files (createLogging does). */
export function registerLogFiles(files: Flushable): void {
  open.add(files);
}

/** Flushes every registered set of log files (see {@link Flushable.flush}). */
export async function flushAllLogs(): Promise<void> {
  await Promise.all([...open].map((l) => l.flush()));
}

/** Synchronous {@link flushAllLogs}, for `process.exit` paths. */
export function flushAllLogsSync(): void {
  for (const l of open) l.flushSync();
}
