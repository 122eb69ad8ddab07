/**
 * bench/cli-start — start-up cost of the CLI as operators feel it: median wall time of
 * `bots --help` and `bots balance` (SQLite, existing database) over N interleaved runs each,
 * side by side with `node -e 0` in the same run, and their ratios to it (goals: --help ≤ 1.2×,
 * balance ≤ 2×). Needs the build (npm ci or npm run build). Prints figures; asserts nothing.
 *
 *   node bench/cli-start.ts   (through tsx: node --import tsx bench/cli-start.ts [--runs 20])
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";

const { values } = parseArgs({ options: { runs: { type: "string", default: "20" } } });
const RUNS = Number(values.runs);
const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../bin/bots.js");
const dir = mkdtempSync(path.join(os.tmpdir(), "bots-cli-bench-"));
const env = { ...process.env, NO_COLOR: "1", DATABASE_URL: `sqlite:${path.join(dir, "b.db")}` };

function time(args: string[], runs = RUNS): number[] {
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    execFileSync(process.execPath, args, { cwd: dir, env, stdio: "ignore" });
    out.push(performance.now() - t);
  }
  return out;
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

// Create the database first, as an operator's second command finds it.
execFileSync(process.execPath, [bin, "balance", "add", "500", "--yes", "--new-account"], { cwd: dir, env, stdio: "ignore" });
// Interleaved rounds, so a load spike on the machine hits all three alike.
const runs: Record<"base" | "help" | "balance", number[]> = { base: [], help: [], balance: [] };
for (let i = 0; i < RUNS; i++) {
  runs.base.push(...time(["-e", "0"], 1));
  runs.help.push(...time([bin, "--help"], 1));
  runs.balance.push(...time([bin, "balance"], 1));
}
const base = median(runs.base);
const help = median(runs.help);
const balance = median(runs.balance);
const row = (name: string, ms: number, goal?: number) =>
  `${name.padEnd(16)} ${ms.toFixed(0).padStart(5)} ms  ${(ms / base).toFixed(2)}×${goal ? `   (goal ≤ ${goal}×: ${ms / base <= goal ? "met" : "NOT met"})` : ""}`;
console.log(`bench/cli-start  runs=${RUNS} node=${process.version}  (medians; ratio to node -e 0 in the same run)`);
console.log(row("node -e 0", base));
console.log(row("bots --help", help, 1.2));
console.log(row("bots balance", balance, 2));
rmSync(dir, { recursive: true, force: true });
