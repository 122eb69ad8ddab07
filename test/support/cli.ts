import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { runCli } from "../../src/cli/program.js";

/** The repository root. */
export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** What a command printed and its exit code. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `bots ARGS` in-process through {@link runCli} with captured streams (not a TTY) and the
 * given environment instead of the process's.
 */
export async function cli(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  let stdout = "";
  let stderr = "";
  const code = await runCli(["--no-color", ...args], {
    stdout: { write: (s: string) => (stdout += s), isTTY: false },
    stderr: { write: (s: string) => (stderr += s), isTTY: false },
    stdinIsTTY: false,
    env: { PATH: process.env.PATH ?? "", ...env },
  });
  return { code, stdout, stderr };
}

/** Newest modification time under a folder, ms. */
function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/** Bundles dist/bundle/ (scripts/bundle.mjs, as `npm ci` does) when it is missing or older than src/. */
export async function ensureBuilt(): Promise<void> {
  const main = path.join(REPO, "dist/bundle/main.js");
  if (existsSync(main) && newest(path.join(REPO, "dist/bundle")) >= newest(path.join(REPO, "src"))) return;
  await promisify(execFile)(process.execPath, [path.join(REPO, "scripts/bundle.mjs")], { cwd: REPO });
}

/**
 * Runs the real launcher `node bin/bots.js ARGS` (after {@link ensureBuilt}) as a child process,
 * asynchronously so servers in this process keep answering.
 */
export async function bin(args: string[], env: Record<string, string> = {}, cwd = REPO): Promise<CliRun> {
  await ensureBuilt();
  try {
    const r = await promisify(execFile)(process.execPath, [path.join(REPO, "bin/bots.js"), "--no-color", ...args], {
      cwd,
      env: { PATH: process.env.PATH ?? "", NO_COLOR: "1", ...env },
      timeout: 60_000,
    });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (error) {
    const e = error as { code?: number | string; stdout?: string; stderr?: string };
    if (typeof e.code !== "number") throw error;
    return { code: e.code, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

/** The real launcher, as operators run it (needs the build: `npm ci` or `npx tsc`). */
export const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../bin/bots.js");

/** Result of a finished `bots` process. */
export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `bots ARGS` to completion in `cwd` with extra environment (building dist/ if stale). */
export async function runBots(
  args: string[],
  opts: { cwd?: string; env?: Record<string, string>; timeoutMs?: number; input?: string } = {},
): Promise<CliResult> {
  await ensureBuilt();
  const child = spawnBots(args, opts);
  if (opts.input !== undefined) child.stdin!.end(opts.input);
  return finished(child, opts.timeoutMs ?? 60_000);
}

/**
 * Starts `bots ARGS` and returns the child (stdout/stderr collected on `child.out`). Call
 * {@link ensureBuilt} first.
 */
export function spawnBots(
  args: string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
): ChildProcess & { out: { stdout: string; stderr: string } } {
  if (!existsSync(path.resolve(path.dirname(BIN), "../dist/bundle/main.js")))
    throw new Error("dist/bundle is missing: run `npm run build` (npm ci does it through prepare)");
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
