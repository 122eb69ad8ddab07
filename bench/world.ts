/**
 * The outside world of bench/pipeline and bench/peer, in processes of its own so its work does
 * not share the bot's event loop. `BENCH_ROLE=model`: the OpenAI-compatible server alone (as a
 * remote API would be; `latency` sets its delay, `hang` makes the text "hang" wait `hangMs`);
 * otherwise the Bot API emulator and the users sending messages, in front of it the proxy with
 * Telegram's getUpdates offset rule when `BENCH_PROXY=1` (test/support/conflict-proxy.ts).
 * Driven over IPC; a command's `token` picks the bot (default `BENCH_TOKEN`), a load's `tag`
 * prefixes its texts (a second load is not the same texts again) and its `firstChat` is the
 * chat_id of its first chat (default 1000; chats follow in order); `serverTimes` answers with
 * how long the emulator took with each sendMessage since the last time it was asked, ms.
 */
import { BotApiCluster, startConflictProxy } from "../test/support/conflict-proxy.js";
import { FakeOpenAI, lastUserText } from "../test/support/openai-server.js";
import { startTelegram } from "../test/support/telegram.js";

type Cmd =
  | { cmd: "load"; n: number; chats: number; token?: string; tag?: string; firstChat?: number }
  | { cmd: "hang"; others: number; hangMs: number; latencyMs: number; token?: string; andHung?: boolean }
  | { cmd: "serverTimes" }
  | { cmd: "stop" };

const TOKEN = process.env.BENCH_TOKEN!;
if (process.env.BENCH_ROLE === "model") {
  const llm = new FakeOpenAI();
  // Connections kept as a model API keeps them (for a while, not per request), for both bots.
  await llm.start(30_000);
  llm.latencyMs = Number(process.env.BENCH_LATENCY);
  let markAt = 0;
  process.on("message", (m: { cmd: string; hangMs?: number; latencyMs?: number }) => {
    if (m.cmd === "latency") {
      llm.latencyMs = m.latencyMs!;
      llm.respond = (req) => ({ text: `echo: ${lastUserText(req)}` });
      process.send!({ ok: true });
    }
    if (m.cmd === "hang")
      llm.respond = (req) =>
        lastUserText(req) === "hang" ? { text: "late", delayMs: m.hangMs! } : { text: `echo: ${lastUserText(req)}`, delayMs: m.latencyMs! };
    if (m.cmd === "stop") void llm.stop().then(() => process.exit(0));
    // `mark`: requests from now on are the next `arrivals`' (epoch ms of each arrival, in order).
    if (m.cmd === "mark") {
      markAt = llm.requests.length;
      process.send!({ ok: true });
    }
    if (m.cmd === "arrivals") process.send!({ at: llm.requests.slice(markAt).map((r) => r.at) });
  });
  process.send!({ llmUrl: llm.url });
} else {
  const { server, apiRoot: emulatorRoot } = await startTelegram();
  const proxy = process.env.BENCH_PROXY === "1" ? await startConflictProxy(new BotApiCluster(emulatorRoot), "bench", { keepAliveMs: 120_000 }) : undefined;
  const apiRoot = proxy?.url ?? emulatorRoot;
  // How long the emulator itself takes with each sendMessage (its HTTP server's request event to
  // the response's finish, ms, in arrival order): the part of a bot's send round trip that is
  // not the bot's (`serverTimes` hands them over and starts a new list).
  let sendHandling: number[] = [];
  (server as unknown as { server: import("node:http").Server }).server.prependListener("request", (req, res) => {
    // The bot's sends (`/bot<token>/sendMessage`), not the users' (`/sendMessage` of its client API).
    if (!req.url?.startsWith("/bot") || !req.url.endsWith("/sendMessage")) return;
    const t = performance.now();
    res.once("finish", () => sendHandling.push(performance.now() - t));
  });

  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  let replies = 0;
  server.on("AddedBotMessage", () => {
    replies++;
    const m = server.storage.botMessages[server.storage.botMessages.length - 1]!.message as { chat_id: number | string; text: string };
    const t = sentAt.get(`${m.chat_id}|${m.text.replace(/^echo: /, "")}`);
    if (t !== undefined) latencies.push(performance.now() - t);
  });
  const clients = new Map<string, ReturnType<typeof server.getClient>>();
  const send = async (chat: number, text: string, token = TOKEN) => {
    let c = clients.get(`${token}|${chat}`);
    if (!c) clients.set(`${token}|${chat}`, (c = server.getClient(token, { userId: chat, chatId: chat, type: "private" })));
    sentAt.set(`${chat}|${text}`, performance.now());
    await c.sendMessage(c.makeMessage(text));
  };
  const waitReplies = async (n: number) => {
    while (replies < n) await new Promise((r) => setTimeout(r, 2));
  };

  process.on("message", async (m: Cmd) => {
    if (m.cmd === "load") {
      const t0 = performance.now();
      const target = replies + m.n;
      // Users write concurrently from many chats, as in real traffic.
      const perChat = Math.ceil(m.n / m.chats);
      await Promise.all(
        Array.from({ length: m.chats }, async (_, c) => {
          for (let k = 0; k < perChat; k++) {
            const i = k * m.chats + c;
            if (i < m.n) await send((m.firstChat ?? 1000) + c, `${m.tag ?? ""}m${i}`, m.token);
          }
        }),
      );
      const sendMs = performance.now() - t0;
      await waitReplies(target);
      process.send!({ wallMs: performance.now() - t0, sendMs });
    } else if (m.cmd === "hang") {
      latencies.length = 0;
      const target = replies + m.others;
      await send(999, "hang", m.token);
      await new Promise((r) => setTimeout(r, 100));
      for (let i = 0; i < m.others; i++) {
        await send(5000 + i, `o${i}`, m.token);
        await new Promise((r) => setTimeout(r, (m.hangMs * 0.6) / m.others));
      }
      await waitReplies(target + (m.andHung ? 1 : 0));
      const sorted = [...latencies].sort((a, b) => a - b);
      process.send!({ p90: sorted[Math.floor(0.9 * sorted.length)], n: sorted.length });
    } else if (m.cmd === "serverTimes") {
      process.send!({ sendMessageMs: sendHandling });
      sendHandling = [];
    } else if (m.cmd === "stop") {
      await proxy?.stop();
      await server.stop();
      process.exit(0);
    }
  });
  process.send!({ apiRoot });
}
