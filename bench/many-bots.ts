/**
 * bench/many-bots: 1,000 Telegram bots in one `bin/bots.js start` process.
 *
 * A light local Bot API (bench/support/light-botapi.ts) serves every token, the local model
 * (test/support/openai-server.ts) answers after 500 ms; a project folder holds 1,000 generated
 * bot YAMLs. Measured: the process's RSS (/proc/PID/status VmRSS) once all bots receive and its
 * peak under load; the time from spawning the process until the light API has seen a first
 * getUpdates of every token; and, at 20 messages/s spread at random over the bots (each from a
 * new user), the answer latency from the update being made available to the sendMessage call.
 * The CPU time the bots process used (/proc/PID/stat) is printed too: on a busy machine it says
 * more than the latencies do.
 *
 * Goals: RSS ≤ 400 MB; all bots receiving ≤ 60 s; p90 answer latency ≤ 800 ms.
 *
 *   npm run bench:many-bots                     # SQLite in the project folder
 *   BENCH_DB=mysql npm run bench:many-bots      # a fresh database on MYSQL_URL (default mysql://root@127.0.0.1:3306/test)
 *   BENCH_BOTS=1000 BENCH_RATE=20 BENCH_LOAD_S=30 BENCH_LATENCY=500 npm run bench:many-bots
 *   BENCH_PROFILE=DIR npm run bench:many-bots   # --cpu-prof of the bots process into DIR (written at its exit)
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { openStore } from "../src/storage/index.js";
import { eventually } from "../test/support/harness.js";
import { BIN, ensureBuilt, finished, spawnBots } from "../test/support/cli.js";
import { createTestDatabase, type TestDatabase } from "../test/support/db.js";
import { Fixture } from "../test/support/fixture.js";
import { FakeOpenAI, lastUserText } from "../test/support/openai-server.js";
import { LightBotApi } from "./support/light-botapi.js";

const BOTS = Number(process.env.BENCH_BOTS ?? 1000);
const RATE = Number(process.env.BENCH_RATE ?? 20);
const LOAD_S = Number(process.env.BENCH_LOAD_S ?? 30);
const LATENCY = Number(process.env.BENCH_LATENCY ?? 500);
const DIALECT = process.env.BENCH_DB === "mysql" ? "mysql" : "sqlite";
process.env.MYSQL_URL ??= "mysql://root@127.0.0.1:3306/test";

const ARGS = ["start", "tg", "--http-port", "0", "--drain-timeout", "5"];

/** `node NODE_FLAGS bin/bots.js ARGS` (node refuses --cpu-prof in NODE_OPTIONS), shaped like spawnBots' child. */
function spawnProfiled(nodeFlags: string[], args: string[], cwd: string): ReturnType<typeof spawnBots> {
  const c = spawn(process.execPath, [...nodeFlags, BIN, ...args], {
    cwd,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", NO_COLOR: "1" },
    stdio: ["pipe", "pipe", "pipe"],
  }) as ReturnType<typeof spawnBots>;
  c.out = { stdout: "", stderr: "" };
  c.stdout!.on("data", (d) => (c.out.stdout += String(d)));
  c.stderr!.on("data", (d) => (c.out.stderr += String(d)));
  return c;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const tokenOf = (i: number) => `${7_000_000 + i}:BENCH-many-bots-${String(i).padStart(4, "0")}`;
const nameOf = (i: number) => `bench-${String(i).padStart(4, "0")}`;

/** Resident set size of a process, MB (Linux /proc). */
function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** CPU time a process has used (user + system), s (Linux /proc; clock ticks of 1/100 s). */
function cpuS(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
}

const pct = (sorted: number[], p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]! : NaN);

await ensureBuilt();
const fx = new Fixture();
const api = new LightBotApi();
const apiRoot = await api.start();
const llm = new FakeOpenAI();
await llm.start();
llm.latencyMs = LATENCY;
let db: TestDatabase | undefined;
let child: ReturnType<typeof spawnBots> | undefined;
try {
  const dbUrl = DIALECT === "mysql" ? (db = await createTestDatabase("mysql")).url : `sqlite:${path.join(fx.root, "data/bots.db")}`;
  fx.write("prompts/p.md", "Be brief.");
  for (let i = 0; i < BOTS; i++) {
    fx.bot(
      nameOf(i),
      [
        "channel: tg",
        "prompt: prompts/p.md",
        "llm:",
        "  model: m",
        "  api_key: ${OPENAI_API_KEY}",
        "  base_url: ${OPENAI_BASE_URL}",
        "  timeout_s: 30",
        "tg:",
        `  token: ${tokenOf(i)}`,
        "  api_root: ${TG_API_ROOT}",
      ].join("\n"),
    );
  }
  fx.write(".env", `DATABASE_URL=${dbUrl}\nOPENAI_API_KEY=sk-bench-key-000000\nOPENAI_BASE_URL=${llm.url}\nTG_API_ROOT=${apiRoot}\n`);
  const store = await openStore(dbUrl);
  await store.balance.topUp("default", 100_000_000);
  await store.close();

  const profile = process.env.BENCH_PROFILE ? path.resolve(process.env.BENCH_PROFILE) : undefined;
  const spawnedAt = performance.now();
  child = profile ? spawnProfiled([`--cpu-prof`, `--cpu-prof-dir=${profile}`], ARGS, fx.root) : spawnBots(ARGS, { cwd: fx.root });
  const c = child;
  let peak = 0;
  const sampler = setInterval(() => {
    if (c.exitCode === null) peak = Math.max(peak, rssMb(c.pid!));
  }, 250);
  await eventually(() => api.firstPoll.size >= BOTS || c.exitCode !== null, 600_000, `a getUpdates from all ${BOTS} bots`);
  if (c.exitCode !== null) throw new Error(`bots start exited: ${c.out.stderr.slice(-2000)}`);
  const allReceivingS = (Math.max(...api.firstPoll.values()) - spawnedAt) / 1000;
  const bannerAt = performance.now();
  await eventually(() => c.out.stderr.includes("Press Ctrl-C"), 600_000, "start banner");
  const bannerS = (performance.now() - spawnedAt) / 1000;
  void bannerAt;
  await sleep(2000);
  const rssStart = rssMb(c.pid!);
  const cpuStart = cpuS(c.pid!);
  const peakStart = peak;
  peak = 0;

  // Load: RATE messages a second, each to a random bot from a new user.
  const latencies: number[] = [];
  const receiving: number[] = [];
  const beforeModel: number[] = [];
  const afterModel: number[] = [];
  // When the model got each message's request, by its text (performance.now() ms).
  const modelAt = new Map<string, number>();
  const respond = llm.respond;
  llm.respond = (req) => {
    modelAt.set(lastUserText(req), performance.now());
    return respond(req);
  };
  api.onSend = (m) => {
    const key = `${m.token}|${m.chatId}|${m.text.replace(/^echo: /, "")}`;
    const t = api.madeAvailable.get(key);
    if (t !== undefined) latencies.push(m.at - t);
    const d = api.delivered.get(key);
    if (t !== undefined && d !== undefined) receiving.push(d - t);
    const at = modelAt.get(m.text.replace(/^echo: /, ""));
    if (d !== undefined && at !== undefined) {
      beforeModel.push(at - d);
      afterModel.push(m.at - at - LATENCY);
    }
  };
  const total = Math.round(RATE * LOAD_S);
  const loadFrom = performance.now();
  for (let k = 0; k < total; k++) {
    const due = loadFrom + (k * 1000) / RATE;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    const i = Math.floor(Math.random() * BOTS);
    api.userSays(tokenOf(i), 100_000 + k, `m${k}`);
  }
  await eventually(() => latencies.length >= total, 120_000, `${total} answers`).catch((e: Error) => console.error(e.message));
  const rssLoad = peak;
  const cpuLoad = cpuS(c.pid!) - cpuStart;
  const loadS = (performance.now() - loadFrom) / 1000;
  clearInterval(sampler);
  c.kill("SIGTERM");
  await finished(c, 60_000);

  const sorted = [...latencies].sort((a, b) => a - b);
  const row = (what: string, figure: string, goal: string, met?: boolean) =>
    console.log(`${what.padEnd(44)} ${figure.padStart(12)}   ${goal}${met === undefined ? "" : met ? "  met" : "  MISSED"}`);
  console.log(`${BOTS} Telegram bots in one process (${DIALECT}); light Bot API; model latency ${LATENCY} ms; ${RATE} messages/s for ${LOAD_S} s\n`);
  row("", "figure", "goal");
  row("RSS once all bots receive", `${rssStart.toFixed(0)} MB`, "≤ 400 MB", rssStart <= 400);
  row("RSS peak while starting", `${peakStart.toFixed(0)} MB`, "≤ 400 MB", peakStart <= 400);
  row("RSS peak under load", `${rssLoad.toFixed(0)} MB`, "≤ 400 MB", rssLoad <= 400);
  row("start → every bot's first getUpdates", `${allReceivingS.toFixed(1)} s`, "≤ 60 s", allReceivingS <= 60);
  row("start → 'Running …' banner", `${bannerS.toFixed(1)} s`, "");
  row("CPU of the bots process while starting", `${cpuStart.toFixed(1)} s`, "");
  row(
    "CPU per answered message",
    `${((cpuLoad * 1000) / Math.max(1, latencies.length)).toFixed(1)} ms`,
    `(${((cpuLoad / loadS) * 100).toFixed(0)}% of a core over ${loadS.toFixed(0)} s)`,
  );
  row("answers", `${latencies.length} / ${total}`, "all", latencies.length === total);
  row("answer latency p50", `${pct(sorted, 0.5).toFixed(0)} ms`, `(model ${LATENCY} ms)`);
  row("answer latency p90", `${pct(sorted, 0.9).toFixed(0)} ms`, "≤ 800 ms", pct(sorted, 0.9) <= 800);
  row("answer latency p99", `${pct(sorted, 0.99).toFixed(0)} ms`, "");
  const p90of = (xs: number[]) =>
    pct(
      [...xs].sort((a, b) => a - b),
      0.9,
    ).toFixed(0);
  row("  p90 of: update → returned by getUpdates", `${p90of(receiving)} ms`, "");
  row("  p90 of: getUpdates → model request", `${p90of(beforeModel)} ms`, "(dedupe, spam, record, reserve, context)");
  row("  p90 of: model answer → sendMessage", `${p90of(afterModel)} ms`, "(claim, send)");
  row("answer latency max", `${(sorted[sorted.length - 1] ?? NaN).toFixed(0)} ms`, "");
  if (profile) console.log(`\nCPU profile of the bots process in ${profile}`);
} finally {
  if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  await api.stop();
  await llm.stop();
  await db?.drop();
  fx.cleanup();
}
process.exit(0);
