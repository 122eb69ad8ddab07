import { flushAllLogsSync } from "../log-flush.js";
import { runCli } from "./program.js";

/**
 * Exit code when the reader of stdout or stderr went away (`bots … | head`): 141, what a shell
 * reports for a process ended by SIGPIPE (128 + 13), so `set -o pipefail` scripts see the same
 * code as for `yes | head`. Nothing is printed: the reader asked for no more.
 */
export const EXIT_PIPE_CLOSED = 141;

// Node ignores SIGPIPE, so a closed pipe surfaces as an EPIPE 'error' event on the stream;
// without a listener it is an uncaught exception with a stack. End quietly instead, as if by
// SIGPIPE: whatever the command was doing is as safe to cut here as a kill.
const streams = [process.stdout, process.stderr];
const pipeClosed = () => streams.some((s) => (s.errored as NodeJS.ErrnoException | null)?.code === "EPIPE");
for (const stream of streams) {
  stream.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE") process.exit(EXIT_PIPE_CLOSED);
    throw error;
  });
}

// The only place that exits the process. Commands have flushed their logs and closed
// their connections by now; exiting explicitly ends keep-alive sockets of HTTP clients too.
/**
 * Waits until a stream has handed all its queued output to the system. Output to a socket (a
 * parent process's stdio) is written asynchronously; exiting before that would cut it off and
 * hide a reader that went away.
 */
function flushed(stream: NodeJS.WriteStream): Promise<void> {
  if (!stream.writableLength || stream.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    stream.once("drain", resolve);
    stream.once("close", resolve);
  });
}

// A write that met the closed pipe marks the stream at once but reports it a tick later: a
// command that finished meanwhile ends with the same code.
const code = await runCli(process.argv.slice(2));
// runCli flushed the log files; anything logged since is written before the exit.
flushAllLogsSync();
await Promise.all(streams.map(flushed));
process.exit(pipeClosed() ? EXIT_PIPE_CLOSED : code);
