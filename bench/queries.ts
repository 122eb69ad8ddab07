/**
 * bench/queries: SQL statements per answered message on MariaDB.
 *
 * One `bin/bots.js start` process with one Telegram bot (Bot API emulator and the local model
 * in this process) on a fresh MariaDB database. With the general log on (`SET GLOBAL
 * general_log=1, log_output='TABLE'`, restored afterwards) it answers N messages, then idles
 * for as long as the load took. Statements are those of the bots process's connections only
 * (the threads whose `Connect` names this run's database), so other clients of the server do not
 * count. An idle period follows, as long as the load took but at least `BENCH_IDLE_S` (20 s, so
 * it holds several heartbeats and placement rounds, which run every TTL / 3 = 5 s); its rate,
 * scaled to the load's length, is subtracted from the load period. Both are printed by statement
 * shape (literals replaced by `?`). The bot has the default `spam:` and `history:` settings; the
 * default flood limit (6 a minute per user) is why the messages are spread over chats.
 *
 *   npm run bench:queries                                    # mysql://root@127.0.0.1:3306/test
 *   BENCH_MESSAGES=50 BENCH_CHATS=10 MYSQL_URL=mysql://root@127.0.0.1:3306/test npm run bench:queries
 *
 * Needs a user allowed to `SET GLOBAL` and to read `mysql.general_log`.
 */
import { createConnection } from "mysql2/promise";
import { openStore } from "../src/storage/index.js";
import { eventually } from "../test/support/harness.js";
import { ensureBuilt, finished, spawnBots } from "../test/support/cli.js";
import { createTestDatabase } from "../test/support/db.js";
import { Fixture } from "../test/support/fixture.js";
import { FakeOpenAI } from "../test/support/openai-server.js";
import { startTelegram } from "../test/support/telegram.js";
import { oneTelegramBot } from "./support/project.js";

const N = Number(process.env.BENCH_MESSAGES ?? 50);
const CHATS = Number(process.env.BENCH_CHATS ?? 10);
const IDLE_MS = Number(process.env.BENCH_IDLE_S ?? 20) * 1000;
const TOKEN = "123456:BENCH-queries_token";
process.env.MYSQL_URL ??= "mysql://root@127.0.0.1:3306/test";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A statement's shape: literals and lists of them replaced by `?`, whitespace collapsed. */
function shapeOf(sql: string): string {
  return sql
    .replace(/\s+/g, " ")
    .replace(/'(?:[^'\\]|\\.|'')*'/g, "?")
    .replace(/\b\d+(?:\.\d+)?(?:e[+-]?\d+)?\b/gi, "?")
    .replace(/\(\s*\?(?:\s*,\s*\?)*\s*\)/g, "(?+)")
    .replace(/(?:\(\?\+\)\s*,\s*)+\(\?\+\)/g, "(?+)…")
    .trim();
}

const u = new URL(process.env.MYSQL_URL);
const admin = await createConnection({
  host: u.hostname,
  port: Number(u.port || 3306),
  user: decodeURIComponent(u.username),
  password: decodeURIComponent(u.password),
  dateStrings: true,
});
const [[before]] = (await admin.query("SELECT @@GLOBAL.general_log AS general_log, @@GLOBAL.log_output AS log_output")) as unknown as [
  [{ general_log: number; log_output: string }],
];
// The log table is emptied afterwards only if it held nothing before this run.
const [[{ n: rowsBefore }]] = (await admin.query("SELECT COUNT(*) AS n FROM mysql.general_log")) as unknown as [[{ n: number }]];
await ensureBuilt();
const db = await createTestDatabase("mysql");
const dbName = new URL(db.url).pathname.slice(1);
const fx = new Fixture();
const { server, apiRoot } = await startTelegram();
const llm = new FakeOpenAI();
await llm.start();
let child: ReturnType<typeof spawnBots> | undefined;
const now = async () => ((await admin.query("SELECT NOW(6) AS t")) as unknown as [[{ t: string }]])[0][0].t;
try {
  oneTelegramBot(fx, { llmUrl: llm.url, apiRoot, token: TOKEN, dbUrl: db.url });
  const store = await openStore(db.url);
  await store.balance.topUp("default", 1_000_000);
  await store.close();

  await admin.query("SET GLOBAL log_output = 'TABLE'");
  await admin.query("SET GLOBAL general_log = 1");
  const logFrom = await now();
  child = spawnBots(["start", "tg", "--http-port", "0", "--instance-id", "bench-q"], { cwd: fx.root });
  const c = child;
  await eventually(() => c.out.stderr.includes("Running bench-tg") || c.exitCode !== null, 30_000, "start banner");
  if (c.exitCode !== null) throw new Error(c.out.stderr);
  // A warm-up answer: the first one also loads the prompt and opens pool connections.
  const warm = server.getClient(TOKEN, { userId: 1, chatId: 1, type: "private" });
  await warm.sendMessage(warm.makeMessage("warm-up"));
  await eventually(() => server.storage.botMessages.length >= 1, 20_000, "warm-up answer");
  await sleep(500);

  const loadFrom = await now();
  const t0 = performance.now();
  const perChat = Math.ceil(N / CHATS);
  await Promise.all(
    Array.from({ length: CHATS }, async (_, k) => {
      const cl = server.getClient(TOKEN, { userId: 100 + k, chatId: 100 + k, type: "private" });
      for (let i = 0; i < perChat && k + i * CHATS < N; i++) await cl.sendMessage(cl.makeMessage(`c${k} m${i}`));
    }),
  );
  await eventually(() => server.storage.botMessages.length >= 1 + N, 120_000, `${N} answers`);
  await sleep(300);
  const loadMs = performance.now() - t0;
  const idleFrom = await now();
  const idleMs = Math.max(loadMs, IDLE_MS);
  await sleep(idleMs);
  const idleTo = await now();
  c.kill("SIGTERM");
  await finished(c, 20_000);
  await admin.query("SET GLOBAL general_log = 0");

  type Row = { event_time: string; thread_id: number; command_type: string; argument: Buffer | string };
  const [rows] = (await admin.query("SELECT event_time, thread_id, command_type, argument FROM mysql.general_log WHERE event_time >= ? ORDER BY event_time", [
    logFrom,
  ])) as unknown as [Row[]];
  const text = (r: Row) => (Buffer.isBuffer(r.argument) ? r.argument.toString("utf8") : String(r.argument));
  const threads = new Set(rows.filter((r) => r.command_type === "Connect" && text(r).includes(` on ${dbName} `)).map((r) => r.thread_id));
  const mine = rows.filter((r) => threads.has(r.thread_id) && (r.command_type === "Query" || r.command_type === "Execute"));
  const count = (from: string, to: string) => {
    const m = new Map<string, number>();
    for (const r of mine) if (r.event_time >= from && r.event_time < to) m.set(shapeOf(text(r)), (m.get(shapeOf(text(r))) ?? 0) + 1);
    return m;
  };
  const load = count(loadFrom, idleFrom);
  const idle = count(idleFrom, idleTo);
  const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
  // The idle period's statements scaled to the load period's length.
  const scale = loadMs / idleMs;
  const shapes = [...new Set([...load.keys(), ...idle.keys()])]
    .map((s) => ({ s, load: load.get(s) ?? 0, idle: idle.get(s) ?? 0 }))
    .sort((a, b) => b.load - b.idle * scale - (a.load - a.idle * scale) || b.idle - a.idle);
  const cut = (s: string, w: number) => (s.length > w ? `${s.slice(0, w - 1)}…` : s.padEnd(w));
  console.log(
    `MariaDB ${dbName}: ${N} messages over ${CHATS} chats answered in ${(loadMs / 1000).toFixed(1)} s, then ${(idleMs / 1000).toFixed(1)} s idle; bots process threads ${[...threads].join(", ")}`,
  );
  console.log(`\n${"per answered message".padStart(20)} ${"load".padStart(6)} ${"idle".padStart(6)}  statement shape`);
  for (const x of shapes)
    console.log(`${((x.load - x.idle * scale) / N).toFixed(2).padStart(20)} ${String(x.load).padStart(6)} ${String(x.idle).padStart(6)}  ${cut(x.s, 150)}`);
  const perMsg = (sum(load) - sum(idle) * scale) / N;
  console.log(`\n${"statements".padEnd(36)} ${"figure".padStart(10)}   goal`);
  console.log(`${"load period, all".padEnd(36)} ${String(sum(load)).padStart(10)}`);
  console.log(`${`idle period (${(idleMs / 1000).toFixed(1)} s)`.padEnd(36)} ${String(sum(idle)).padStart(10)}   (heartbeats and placement rounds)`);
  console.log(`${"idle, per second".padEnd(36)} ${(sum(idle) / (idleMs / 1000)).toFixed(2).padStart(10)}`);
  console.log(`${"per answered message (load − idle)".padEnd(36)} ${perMsg.toFixed(2).padStart(10)}   ≤ 8 (statements the process sends: round trips)`);
  const calls = [...load.keys()].filter((k) => /^CALL /i.test(k));
  if (calls.length)
    console.log(
      `${"".padEnd(36)} ${"".padStart(10)}   of them ${calls.map((k) => k.split("(")[0]).join(", ")}: one round trip each; inside, the server runs an UPDATE and an INSERT in one transaction (src/storage/migrations/0014_procedures.ts)`,
    );
} finally {
  if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  await admin.query(`SET GLOBAL general_log = ${Number(before.general_log) ? 1 : 0}`);
  await admin.query("SET GLOBAL log_output = ?", [before.log_output]);
  if (Number(rowsBefore) === 0 && !Number(before.general_log)) await admin.query("TRUNCATE TABLE mysql.general_log");
  await admin.end();
  await server.stop();
  await llm.stop();
  await db.drop();
  fx.cleanup();
}
process.exit(0);
