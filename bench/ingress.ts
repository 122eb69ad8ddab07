/**
 * What one ingress costs: a Telegram webhook bot run by two `bin/bots.js start`
 * instances on one database. Updates are POSTed alternately to the bot's owner and to the other
 * instance (which records them; the owner's inbox sweep answers them). Prints the answer latency
 * (POST → sendMessage seen by the Bot API emulator) of both, and the difference at p50 and p90:
 * the latency a non-owner adds. Goal: p90 ≤ 300 ms.
 *
 *   node --import tsx bench/ingress.ts                # SQLite in a temp folder
 *   MYSQL_URL=mysql://root@127.0.0.1:3306/test node --import tsx bench/ingress.ts
 *
 * BENCH_MESSAGES (default 200) updates, one every BENCH_GAP_MS (default 50), each from its own chat.
 */
import { openStore } from "../src/storage/index.js";
import { ensureBuilt, finished, spawnBots } from "../test/support/cli.js";
import { createTestDatabase } from "../test/support/db.js";
import { eventually } from "../test/support/harness.js";
import { Fixture } from "../test/support/fixture.js";
import { FakeOpenAI } from "../test/support/openai-server.js";
import { startTelegram } from "../test/support/telegram.js";

const N = Number(process.env.BENCH_MESSAGES ?? 200);
const GAP = Number(process.env.BENCH_GAP_MS ?? 50);
const TOKEN = "123456:BENCH-ingress_token";
const SECRET = "bench-secret";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}

async function main(): Promise<void> {
  await ensureBuilt();
  const dialect = process.env.MYSQL_URL ? "mysql" : "sqlite";
  const tg = await startTelegram();
  const llm = new FakeOpenAI();
  llm.latencyMs = 0;
  await llm.start();
  const db = await createTestDatabase(dialect);
  const fx = new Fixture();
  const children: Array<ReturnType<typeof spawnBots>> = [];
  try {
    fx.write("prompts/p.md", "Be brief.");
    fx.bot(
      "hook-tg",
      [
        "channel: tg",
        "prompt: prompts/p.md",
        "llm:",
        "  model: m",
        "  api_key: ${OPENAI_API_KEY}",
        `  base_url: ${llm.url}`,
        "  concurrency: 64",
        "tg:",
        "  token: ${TG_TOKEN}",
        `  api_root: ${tg.apiRoot}`,
        "  mode: webhook",
        "  webhook:",
        "    url: https://bots.example.org",
        `    secret_token: ${SECRET}`,
      ].join("\n"),
    );
    fx.write(".env", `OPENAI_API_KEY=sk-bench-123456\nTG_TOKEN=${TOKEN}\nDATABASE_URL=${db.url}\n`);
    const store = await openStore(db.url);
    await store.balance.topUp("default", 100_000_000);
    const ports: Record<string, number> = {};
    for (const id of ["i1", "i2"]) {
      const child = spawnBots(["start", "--instance-id", id, "--http-port", "0"], { cwd: fx.root });
      children.push(child);
      await eventually(() => /HTTP on [\d.]+:(\d+)/.test(child.out.stderr) || child.exitCode !== null, 30_000, `${id} to start`);
      if (child.exitCode !== null) throw new Error(child.out.stderr);
      ports[id] = Number(/HTTP on [\d.]+:(\d+)/.exec(child.out.stderr)![1]);
    }
    await eventually(async () => (await store.owners.owner("hook-tg"))?.owner != null, 30_000, "an owner");
    const owner = (await store.owners.owner("hook-tg"))!.owner!;
    const other = owner === "i1" ? "i2" : "i1";
    console.log(`${dialect}: hook-tg owned by ${owner}; ${N} webhook updates, every ${GAP} ms, alternately to ${owner} (owner) and ${other} (records only)`);

    const sent = new Map<number, { at: number; via: "owner" | "other" }>();
    const answered = new Map<number, number>();
    const watcher = setInterval(() => {
      for (const m of tg.server.storage.botMessages) {
        const chat = Number(m.message.chat_id);
        if (!answered.has(chat) && sent.has(chat)) answered.set(chat, performance.now());
      }
    }, 2);
    for (let i = 0; i < N; i++) {
      const chat = 900_000 + i;
      const via = i % 2 === 0 ? "owner" : "other";
      const update = {
        update_id: 10_000 + i,
        message: {
          message_id: 1,
          date: Math.floor(Date.now() / 1000),
          chat: { id: chat, type: "private", first_name: "B" },
          from: { id: chat, is_bot: false, first_name: "B" },
          text: `m${i}`,
        },
      };
      sent.set(chat, { at: performance.now(), via });
      const res = await fetch(`http://127.0.0.1:${ports[via === "owner" ? owner : other]}/tg/hook-tg`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-telegram-bot-api-secret-token": SECRET },
        body: JSON.stringify(update),
      });
      if (res.status !== 200) throw new Error(`webhook answered ${res.status}`);
      await sleep(GAP);
    }
    await eventually(() => answered.size === N, 60_000, "every answer");
    clearInterval(watcher);
    const lat = { owner: [] as number[], other: [] as number[] };
    for (const [chat, s] of sent) lat[s.via].push(answered.get(chat)! - s.at);
    const row = (name: string, xs: number[]) =>
      console.log(
        `${name.padEnd(34)} p50 ${pct(xs, 50).toFixed(0).padStart(5)} ms   p90 ${pct(xs, 90).toFixed(0).padStart(5)} ms   max ${Math.max(...xs)
          .toFixed(0)
          .padStart(5)} ms   (n=${xs.length})`,
      );
    row("to the owner: POST → answer", lat.owner);
    row("to the other instance: POST → answer", lat.other);
    const added50 = pct(lat.other, 50) - pct(lat.owner, 50);
    const added90 = pct(lat.other, 90) - pct(lat.owner, 90);
    console.log(`added by a non-owner: p50 ${added50.toFixed(0)} ms, p90 ${added90.toFixed(0)} ms (goal p90 ≤ 300 ms: ${added90 <= 300 ? "met" : "missed"})`);
    const dup = tg.server.storage.botMessages.length - N;
    console.log(`answers sent: ${tg.server.storage.botMessages.length} for ${N} updates (${dup === 0 ? "each once" : `${dup} extra`})`);
    await store.close();
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill("SIGTERM");
    await Promise.all(children.map((c) => finished(c, 20_000)));
    await tg.server.stop();
    await llm.stop();
    await db.drop();
    fx.cleanup();
  }
}

await main();
