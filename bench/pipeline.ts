/**
 * bench/pipeline — the main job under load, through the real Telegram worker and the Bot API
 * emulator (telegram-test-api), a local OpenAI-compatible server with fixed latency, and SQLite
 * (or `--db URL`). The emulator with the users, and the model server, run in child processes
 * (bench/world.ts) so they do not share the bot's event loop. Prints figures; asserts nothing.
 *
 *   node --import tsx bench/pipeline.ts [--messages 1000] [--chats 200] [--latency 500] [--concurrency 32] [--hang 8000] [--db URL]
 *   BENCH_ROUNDS=5 npm run bench:pipeline     # loads of (1) run in turn (default 3)
 *
 * 1. Throughput: N messages over C chats; wall time (first send → last reply) beside the limit
 *    N / concurrency × latency. Run `BENCH_ROUNDS` times in turn, each on chats of its own (the
 *    same history lengths every round): with a fixed model latency the answers of a round come
 *    in waves whose spread is set by how the first 32 calls started, and one round's median of
 *    (2) moved between 2.0 and 3.9 ms from run to run (2026-12-06); each round is printed.
 * 2. Own time per message excluding the model: intake + answer − waiting for a model slot −
 *    the model call (median of every round's answers together, p95; each round's median), from
 *    the pipeline's own timings; also shown without the Bot API sendMessage round trip. The send itself is broken down: its durable marks (the
 *    pipeline's `mark` timing) and the emulator's own handling of each sendMessage, timed at its
 *    HTTP server (bench/world.ts `serverTimes`); the rest is ours: the HTTP client and the waits
 *    for the event loop. The model call as the bot saw it is shown beside the latency.
 * 3. Isolation: one chat's model call hangs; p90 latency (user send → reply stored in the
 *    emulator) of 100 messages from other chats meanwhile.
 * 4. SQLite: pages written to the WAL per answered message during (1), counted by holding the
 *    checkpoint back (`wal_autocheckpoint = 0`) and reading the WAL's length in frames: what the
 *    commits cost in writes, which the indexes of `messages` drive (migration 0016).
 */
import { fork } from "node:child_process";
import { sql } from "kysely";
import { once } from "node:events";
import { TelegramWorker } from "../src/channels/telegram/worker.js";
import { loadBotConfigs } from "../src/config/load.js";
import type { PipelineContext } from "../src/core/types.js";
import { createLogging } from "../src/logging.js";
import { startBots } from "../src/runner.js";
import { WAL_CHECKPOINT_PAGES } from "../src/storage/db.js";
import { openStore } from "../src/storage/index.js";
import { createTestDatabase } from "../test/support/db.js";
import { Fixture } from "../test/support/fixture.js";
import { loadBenchBot, loadOptions } from "./support/project.js";

const { messages: N, chats: C, latency: LAT, concurrency: CONC, hang: HANG, db: DB } = loadOptions();
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const TOKEN = "123456:BENCH-token";

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};
const fmt = (ms: number) => `${ms.toFixed(ms < 10 ? 2 : 0)} ms`;

const spawnWorld = (role: string) =>
  fork(new URL("./world.ts", import.meta.url), [], {
    execArgv: ["--import", "tsx"],
    env: { ...process.env, BENCH_ROLE: role, BENCH_TOKEN: TOKEN, BENCH_LATENCY: String(LAT) },
  });
const world = spawnWorld("telegram");
const model = spawnWorld("model");
const ask = async <T>(msg?: unknown, to = world): Promise<T> => {
  if (msg) to.send(msg as never);
  const [reply] = (await once(to, "message")) as [T];
  return reply;
};
const { apiRoot } = await ask<{ apiRoot: string }>();
const { llmUrl } = await ask<{ llmUrl: string }>(undefined, model);

const fx = new Fixture();
const db = DB ? { url: DB, drop: async () => undefined } : await createTestDatabase("sqlite");
loadBenchBot(fx, { llmUrl, apiRoot, token: TOKEN, concurrency: CONC });
const bot = loadBotConfigs(fx.configDir, {}).bots[0]!;
const store = await openStore(db.url);
await store.balance.topUp("default", 100_000_000);
const logging = createLogging({ logDir: fx.logDir, console: false, level: "info" });

const own: number[] = [];
const ownCore: number[] = [];
const modelMs: number[] = [];
const sendMs: number[] = [];
const markMs: number[] = [];
const onOutcome = (ctx: PipelineContext) => {
  if (ctx.outcome !== "answered") return;
  const t = (ctx.timings.intake ?? 0) + (ctx.timings.answer ?? 0) - (ctx.timings.modelWait ?? 0) - (ctx.completion?.latencyMs ?? 0);
  modelMs.push(ctx.completion?.latencyMs ?? 0);
  own.push(t);
  ownCore.push(t - (ctx.timings.deliver ?? 0));
  sendMs.push(ctx.timings.deliver ?? 0);
  markMs.push(ctx.timings.mark ?? 0);
};
const running = await startBots({ bots: [bot], store, logging, onOutcome, createWorker: (b, l) => TelegramWorker.create(b, l, { idlePauseMs: 5 }) });

// SQLite: pages written to the WAL while the load is answered (no checkpoint meanwhile, so the WAL holds them all).
const sqlite = store.database.dialect === "sqlite";
if (sqlite) {
  await sql`PRAGMA wal_autocheckpoint = 0`.execute(store.database.db);
  await sql`PRAGMA wal_checkpoint(TRUNCATE)`.execute(store.database.db);
}
const loads: Array<{ wallMs: number; sendMs: number; own: number }> = [];
for (let r = 0; r < ROUNDS; r++) {
  const from = own.length;
  const load = await ask<{ wallMs: number; sendMs: number }>({ cmd: "load", n: N, chats: C, tag: `r${r} `, firstChat: 1000 + r * 10_000 });
  loads.push({ ...load, own: pct(own.slice(from), 50) });
}
const walFrames = sqlite ? (await sql<{ log: number }>`PRAGMA wal_checkpoint(PASSIVE)`.execute(store.database.db)).rows[0]!.log : undefined;
if (sqlite) await sql.raw(`PRAGMA wal_autocheckpoint = ${WAL_CHECKPOINT_PAGES}`).execute(store.database.db);
const limit = (N / CONC) * LAT;
const wallRatios = loads.map((l) => l.wallMs / limit);
const wallMedianMs = pct(
  loads.map((l) => l.wallMs),
  50,
);
const sendMedianMs = pct(
  loads.map((l) => l.sendMs),
  50,
);
const phase1Own = [...own];
const phase1Core = [...ownCore];
const phase1Send = [...sendMs];
const phase1Mark = [...markMs];
const { sendMessageMs: emulatorMs } = await ask<{ sendMessageMs: number[] }>({ cmd: "serverTimes" });
const phase1Model = [...modelMs];
model.send({ cmd: "hang", hangMs: HANG, latencyMs: LAT });
const hang = await ask<{ p90: number; n: number }>({ cmd: "hang", others: 100, hangMs: HANG, latencyMs: LAT });

const rounds = (xs: string[]) => (ROUNDS > 1 ? `   rounds: ${xs.join(" / ")}` : "");
console.log(`bench/pipeline  messages=${N} chats=${C} model_latency=${LAT} ms concurrency=${CONC} rounds=${ROUNDS} db=${store.database.dialect}`);
console.log(
  `wall time             ${(wallMedianMs / 1000).toFixed(2)} s   limit ${(limit / 1000).toFixed(2)} s   ratio ${pct(wallRatios, 50).toFixed(3)}   (goal ≤ 1.10; median round; users' sends took ${(sendMedianMs / 1000).toFixed(2)} s)${rounds(wallRatios.map((x) => x.toFixed(3)))}`,
);
console.log(
  `own time excl. model  median ${fmt(pct(phase1Own, 50))}   p95 ${fmt(pct(phase1Own, 95))}   (goal median ≤ 3 ms; includes the sendMessage round trip)${rounds(loads.map((l) => fmt(l.own)))}`,
);
console.log(`  without delivery    median ${fmt(pct(phase1Core, 50))}   p95 ${fmt(pct(phase1Core, 95))}   (n=${phase1Own.length})`);
console.log(
  `  the send itself     median ${fmt(pct(phase1Send, 50))}   of it the durable mark ${fmt(pct(phase1Mark, 50))}, the emulator's own handling ${fmt(pct(emulatorMs, 50))} (median of ${emulatorMs.length} sendMessage, at its server); the rest is the HTTP client and waits for the event loop`,
);
console.log(`model call            median ${fmt(pct(phase1Model, 50))}   p95 ${fmt(pct(phase1Model, 95))}   (server latency ${LAT} ms + HTTP and SDK)`);
if (walFrames !== undefined)
  console.log(
    `WAL pages written     ${(walFrames / (N * ROUNDS)).toFixed(1)} per message   (${walFrames} pages of ${N * ROUNDS} messages: each commit writes every page it changed)`,
  );
console.log(`other chats, 1 hung   p90 ${fmt(hang.p90)}   (goal ≤ ${LAT + 300} ms; n=${hang.n}, hang ${HANG} ms)`);

await running.stop(HANG + 2000);
await store.close();
await logging.flush();
world.send({ cmd: "stop" });
model.send({ cmd: "stop" });
await db.drop();
fx.cleanup();
process.exit(0);
