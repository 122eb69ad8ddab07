import { flushAllLogsSync } from "../log-flush.js";
import { runCli } from "./program.js";

// The only place that exits the process (STYLE 7). Commands have flushed their logs and closed
// their connections by now; exiting explicitly ends keep-alive sockets of HTTP clients too.
const code = await runCli(process.argv.slice(2));
// runCli flushed the log files; anything logged since is written before the exit.
flushAllLogsSync();
process.exit(code);
