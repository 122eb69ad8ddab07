/**
 * bench/stream — streamed drafts in a Telegram private chat: with a model whose first token
 * comes after T ms, the time from the bot's receipt of a message (its intake) to the first
 * `sendMessageDraft` at the Bot API, beside T and the goal T + 200 ms (p50); to the first sign
 * of life the customer sees (`sendChatAction` typing or a draft, goal p50 ≤ 150 ms); and to the
 * final `sendMessage`. Through the real Telegram worker and pipeline (in process), the Bot API
 * emulator behind the draft proxy, the local OpenAI-compatible server streaming a word a chunk,
 * and SQLite (or MariaDB with `--dialect mysql` and MYSQL_URL). One message at a time, each in
 * its own chat. Prints figures; asserts nothing.
 *
 *   node --import tsx bench/stream.ts [--messages 30] [--first-token 500] [--chunk 50] [--dialect sqlite]
 */
import { parseArgs } from "node:util";
import { startDraftProxy } from "../test/support/botapi-proxy.js";
import { Harness, TOKEN } from "../test/support/harness.js";
import { userSays, waitForBotMessages } from "../test/support/telegram.js";

const { values } = parseArgs({
  options: {
    messages: { type: "string", default: "30" },
    "first-token": { type: "string", default: "500" },
    chunk: { type: "string", default: "50" },
    dialect: { type: "string", default: "sqlite" },
  },
});
const N = Number(values.messages);
const T = Number(values["first-token"]);
const CHUNK = Number(values.chunk);
const ANSWER = "Our sofa comes in green, blue and grey; delivery takes three days and is free within the city.";

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
};
const fmt = (ms: number) => `${Math.round(ms)} ms`;

const intakeAt = new Map<string, number>();
let proxy!: Awaited<ReturnType<typeof startDraftProxy>>;
const h = await Harness.start({
  dialect: values.dialect as "sqlite" | "mysql",
  balance: N * 5 + 5,
  apiRoot: async (root) => {
    proxy = await startDraftProxy(root);
    return proxy.url;
  },
  startOptions: () => ({ onIntake: (ctx) => void intakeAt.set(ctx.msg.chatId, performance.now()) }),
});
try {
  h.llm.respond = () => ({ text: ANSWER, delayMs: T, chunkDelayMs: CHUNK });
  const firstDraft: number[] = [];
  const firstSign: number[] = [];
  const answered: number[] = [];
  for (let i = 0; i < N; i++) {
    const chat = 5000 + i;
    await userSays(h.telegram, TOKEN, chat, `question ${i}`);
    await waitForBotMessages(h.telegram, chat, 1, 30_000);
    const done = performance.now();
    const t0 = intakeAt.get(String(chat))!;
    const draft = proxy.drafts.find((d) => d.chat_id === chat);
    if (draft) firstDraft.push(draft.at - t0);
    const typing = proxy.actions.find((a) => a.chat_id === chat);
    const signs = [draft?.at, typing?.at].filter((x): x is number => x !== undefined);
    if (signs.length) firstSign.push(Math.min(...signs) - t0);
    answered.push(done - t0);
  }
  const streamMs = T + (ANSWER.split(" ").length - 1) * CHUNK;
  console.log(`streamed drafts: ${N} messages, model first token after ${T} ms, then a word every ${CHUNK} ms (stream ≈ ${streamMs} ms)`);
  console.log(
    `  intake → first draft:   p50 ${fmt(pct(firstDraft, 50))}  p95 ${fmt(pct(firstDraft, 95))}  (goal p50 ≤ ${T + 200} ms; ${firstDraft.length}/${N} answers had a draft)`,
  );
  console.log(
    `  intake → first sign:    p50 ${fmt(pct(firstSign, 50))}  p95 ${fmt(pct(firstSign, 95))}  (typing or draft; goal p50 ≤ 150 ms; ${firstSign.length}/${N})`,
  );
  console.log(`  intake → answer seen:   p50 ${fmt(pct(answered, 50))}  p95 ${fmt(pct(answered, 95))}`);
  console.log(`  draft calls per answer: ${(proxy.drafts.length / N).toFixed(1)} (at most one per 300 ms)`);
} finally {
  await h.stop();
  await proxy.stop();
}
