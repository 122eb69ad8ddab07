import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** The real launcher, as operators run it (needs the build: `npm ci` or `npx tsc`). */
export const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../bin/bots.js");

function assertBuilt(): void {
  if (!existsSync(path.resolve(path.dirname(BIN), "../dist/cli/main.js"))) throw new Error("dist/ is missing: run `npx tsc` (npm ci does it through prepare)");
}

/** Result of a finished `bots` process. */
export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `bots ARGS` to completion in `cwd` with extra environment. */
export function runBots(args: string[], opts: { cwd?: string; env?: Record<string, string>; timeoutMs?: number; input?: string } = {}): Promise<CliResult> {
  const child = spawnBots(args, opts);
  if (opts.input !== undefined) child.stdin!.end(opts.input);
  return finished(child, opts.timeoutMs ?? 60_000);
}

/** Starts `bots ARGS` and returns the child (stdout/stderr collected on `child.out`). */
export function spawnBots(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): ChildProcess & { out: { stdout: string; stderr: string } } {
  assertBuilt();
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: opts.cwd,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", NO_COLOR: "1", ...opts.env },
    stdio: ["pipe", "pipe", "pipe"],
  }) as ChildProcess & { out: { stdout: string; stderr: string } };
  child.out = { stdout: "", stderr: "" };
  child.stdout!.on("data", (d) => (child.out.stdout += String(d)));
  child.stderr!.on("data", (d) => (child.out.stderr += String(d)));
  return child;
}

/** Waits for a child to exit (kills it after `timeoutMs`). */
export function finished(child: ChildProcess & { out?: { stdout: string; stderr: string } }, timeoutMs = 60_000): Promise<CliResult> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      // Let the pipes drain.
      setImmediate(() => resolve({ code, signal, stdout: child.out?.stdout ?? "", stderr: child.out?.stderr ?? "" }));
    });
  });
}
