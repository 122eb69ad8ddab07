/**
 * bench/cli-start — start-up cost of the CLI as operators feel it: median wall time of
 * `bots --help` and `bots balance` (SQLite, existing database) over N runs each, beside
 * `node -e 0`. Needs the build (npm ci or npx tsc). Prints figures; asserts nothing.
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

function time(args: string[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    execFileSync(process.execPath, args, { cwd: dir, env, stdio: "ignore" });
    out.push(performance.now() - t);
  }
  return out;
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

// Create the database first, as an operator's second command finds it.
execFileSync(process.execPath, [bin, "balance", "add", "500", "--yes", "--new-account"], { cwd: dir, env, stdio: "ignore" });
const base = median(time(["-e", "0"]));
const help = median(time([bin, "--help"]));
const balance = median(time([bin, "balance"]));
console.log(`bench/cli-start  runs=${RUNS} node=${process.version}`);
console.log(`node -e 0        ${base.toFixed(0)} ms`);
console.log(`bots --help      ${help.toFixed(0)} ms   (+${(help - base).toFixed(0)} ms over node; goal ≤ 150 ms)`);
console.log(`bots balance     ${balance.toFixed(0)} ms   (+${(balance - base).toFixed(0)} ms over node; goal ≤ 300 ms)`);
rmSync(dir, { recursive: true, force: true });
