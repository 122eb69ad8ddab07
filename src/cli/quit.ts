import { ExitError } from "../errors.js";

/**
 * Lets a signal handler end a command at once without exiting the process itself (only
 * src/cli/main.ts exits): {@link quit} rejects the raced work with `ExitError(code)`, so `runCli`
 * returns `code`, and main.ts flushes the logs and exits; the work still running ends with that
 * exit, as it did when the handler called `process.exit` itself.
 */
export class QuitSwitch {
  /** True once {@link quit} was called. */
  fired = false;
  private reject!: (error: ExitError) => void;
  private readonly quitting = new Promise<never>((_, reject) => {
    this.reject = reject;
  });

  constructor() {
    // A quit outside a race is not an unhandled rejection: the next race sees it.
    this.quitting.catch(() => {});
  }

  /** Ends the raced work with `ExitError(code)` (1 runtime failure, 130 interrupted). */
  quit(code: number): void {
    this.fired = true;
    this.reject(new ExitError(code));
  }

  /**
   * `work`'s result, or the {@link quit}'s ExitError if that comes first.
   * @throws ExitError on quit, or what `work` throws
   */
  race<T>(work: Promise<T>): Promise<T> {
    return Promise.race([work, this.quitting]);
  }
}
