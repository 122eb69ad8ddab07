import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startConflictProxy } from "../support/conflict-proxy.js";
import { dialects } from "../support/db.js";
import { checkBooks, Checks, FaultBed, modelYaml, OffsetRecorder, pause, type Probe } from "../support/faults.js";
import { eventually } from "../support/harness.js";
import { lastUserText } from "../support/openai-server.js";
import { botMessages, userSays } from "../support/telegram.js";
import { FakeVk, messageNew, postCallback } from "../support/vk-server.js";

const TG_POLL_TOKEN = "710001:TEST-token_poll";
const TG_HOOK_TOKEN = "710002:TEST-token_hook";
const HOOK_SECRET = "hook-secret_123";
const VK_SECRET = "vk-callback-secret";
/** Chats per path and messages per chat sent while the database is down. */
const CHATS = [11, 12, 13];
const PER_CHAT = 2;
/** Bound of each wait; a wait that runs out is reported by the checks, not by a timeout. */
const SETTLE_MS = 60_000;
/** The chat of each path whose answer is in the model's hands when the database goes away. */
const INFLIGHT = 14;

const text = (path: string, chat: number, i: number) => `${path} c${chat} m${i}`;
const expected = (path: string, chat: number) => Array.from({ length: PER_CHAT }, (_, i) => `echo: ${text(path, chat, i)}`);

let updateId = 900_000;
/** A Bot API Update with a private text message, as Telegram POSTs it to a webhook. */
function tgUpdate(chat: number, messageId: number, body: string) {
  return {
    update_id: ++updateId,
    message: {
      message_id: messageId,
      date: Math.floor(Date.now() / 1000),
      chat: { id: chat, type: "private", first_name: `U${chat}` },
      from: { id: chat, is_bot: false, first_name: `U${chat}` },
      text: body,
    },
  };
}

/** One delivery attempt of a sender that retries until acknowledged, as Telegram and VK do. */
interface Attempt {
  status: number;
  retryAfter: string | null;
  ok: boolean;
  at: number;
}

/**
 * Delivers `items` of one chat in order the way Telegram (webhook) and VK (Callback API) do: the
 * next one only after this one was acknowledged; a refused one again after `Retry-After` (1 s
 * when absent), until `deadline`. Returns every attempt per item.
 */
async function deliverInOrder<T>(items: T[], post: (item: T) => Promise<Attempt>, deadline: () => number): Promise<Attempt[][]> {
  const log: Attempt[][] = [];
  for (const item of items) {
    const attempts: Attempt[] = [];
    log.push(attempts);
    for (;;) {
      const a = await post(item);
      attempts.push(a);
      if (a.ok || Date.now() > deadline()) break;
      await pause(Math.min(5000, 1000 * (Number(a.retryAfter) || 1)));
    }
  }
  return log;
}

for (const dialect of dialects()) {
  describe(`the database unreachable under bots start: Telegram polling and webhook, VK callback and long poll (${dialect})`, () => {
    let bed: FaultBed;
    let api: OffsetRecorder;
    const vkCb = new FakeVk("vk1.a.cb-token", 4242);
    const vkLp = new FakeVk("vk1.a.lp-token", 4343);
    /** Health probes while the database was down, and the last ones after it came back. */
    const during: { healthz: Probe[]; readyz: Probe[] } = { healthz: [], readyz: [] };
    let afterUp: { healthz: Probe; readyz: Probe } | undefined;
    let hookLog: Array<{ chat: number; updates: Array<{ update_id: number; text: string }>; attempts: Attempt[][] }> = [];
    let cbLog: Array<{ chat: number; attempts: Attempt[][]; texts: string[] }> = [];
    /** Long poll event number of each text pushed. */
    const lpEvents = new Map<string, number>();
    /** When the database came back, local ms; Infinity while it is down. */
    let downUntil = Infinity;

    before(async () => {
      bed = await FaultBed.create(dialect);
      const target = bed.telegram.config.apiURL;
      api = new OffsetRecorder(target);
      const proxy = await startConflictProxy(api, "faults");
      bed.closers.push(proxy.stop);
      await vkCb.start();
      await vkLp.start();
      bed.closers.push(
        () => vkCb.stop(),
        () => vkLp.stop(),
      );
      const model = modelYaml(bed.llm);
      bed.fx.bot("tg-poll", ["channel: tg", "prompt: prompts/p.md", ...model, "tg:", "  token: ${TG_POLL}", `  api_root: ${proxy.url}`].join("\n"));
      bed.fx.bot(
        "tg-hook",
        [
          "channel: tg",
          "prompt: prompts/p.md",
          ...model,
          "tg:",
          "  token: ${TG_HOOK}",
          `  api_root: ${target}`,
          "  mode: webhook",
          "  webhook:",
          "    url: https://bots.example.org",
          `    secret_token: ${HOOK_SECRET}`,
        ].join("\n"),
      );
      bed.fx.bot(
        "vk-cb",
        [
          "channel: vk",
          "prompt: prompts/p.md",
          ...model,
          "vk:",
          "  token: ${VK_CB}",
          `  group_id: ${vkCb.groupId}`,
          `  api_base_url: ${vkCb.url}`,
          "  answer: [messages]",
          "  callback:",
          "    confirmation: c0nf1rm",
          `    secret: ${VK_SECRET}`,
        ].join("\n"),
      );
      bed.fx.bot(
        "vk-lp",
        [
          "channel: vk",
          "prompt: prompts/p.md",
          ...model,
          "vk:",
          "  token: ${VK_LP}",
          `  group_id: ${vkLp.groupId}`,
          `  api_base_url: ${vkLp.url}`,
          "  mode: longpoll",
          "  answer: [messages]",
        ].join("\n"),
      );
      bed.env = { TG_POLL: TG_POLL_TOKEN, TG_HOOK: TG_HOOK_TOKEN, VK_CB: vkCb.token, VK_LP: vkLp.token };
      const { port } = await bed.start();
      const hook = (u: ReturnType<typeof tgUpdate>): Promise<Attempt> =>
        fetch(`http://127.0.0.1:${port}/tg/tg-hook`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-telegram-bot-api-secret-token": HOOK_SECRET },
          body: JSON.stringify(u),
          signal: AbortSignal.timeout(60_000),
        })
          .then(async (r) => {
            await r.text();
            return { status: r.status, retryAfter: r.headers.get("retry-after"), ok: r.status === 200, at: Date.now() };
          })
          .catch(() => ({ status: 0, retryAfter: null, ok: false, at: Date.now() }));
      const callback = (e: ReturnType<typeof messageNew>): Promise<Attempt> =>
        postCallback(`http://127.0.0.1:${port}/vk/vk-cb`, e)
          .then((r) => ({ status: r.status, retryAfter: null, ok: r.status === 200 && r.text === "ok", at: Date.now() }))
          .catch(() => ({ status: 0, retryAfter: null, ok: false, at: Date.now() }));

      // Every path works before the fault.
      await userSays(bed.telegram, TG_POLL_TOKEN, 1, "warm-up");
      assert.ok((await hook(tgUpdate(1, 1, "warm-up"))).ok);
      assert.ok((await callback(messageNew({ groupId: vkCb.groupId, peerId: 1, id: 1, text: "warm-up", secret: VK_SECRET }))).ok);
      vkLp.pushLongPoll(messageNew({ groupId: vkLp.groupId, peerId: 1, id: 1, text: "warm-up" }));
      await eventually(async () => (await bed.incoming()).filter((r) => r.status === "answered").length === 4, 30_000, "the four warm-up messages answered");

      // One answer per path in flight: recorded, its cost reserved, the model still writing.
      bed.llm.respond = (req) => ({ text: `echo: ${lastUserText(req)}`, delayMs: lastUserText(req).startsWith("inflight") ? 3000 : 0 });
      await userSays(bed.telegram, TG_POLL_TOKEN, INFLIGHT, "inflight poll");
      assert.ok((await hook(tgUpdate(INFLIGHT, 1, "inflight hook"))).ok);
      assert.ok((await callback(messageNew({ groupId: vkCb.groupId, peerId: INFLIGHT, id: 1, text: "inflight cb", secret: VK_SECRET }))).ok);
      vkLp.pushLongPoll(messageNew({ groupId: vkLp.groupId, peerId: INFLIGHT, id: 1, text: "inflight lp" }));
      await eventually(() => bed.llm.requests.filter((r) => lastUserText(r).startsWith("inflight")).length === 4, 20_000, "four answers in the model's hands");

      await bed.db.down();
      const downAt = Date.now();
      // Telegram polling: the users write; the bot fetches through the offset proxy.
      for (let i = 0; i < PER_CHAT; i++) for (const chat of CHATS) await userSays(bed.telegram, TG_POLL_TOKEN, chat, text("poll", chat, i));
      // VK long poll: the events wait in VK's history.
      for (let i = 0; i < PER_CHAT; i++)
        for (const chat of CHATS) {
          lpEvents.set(text("lp", chat, i), vkLp.longPollTs);
          vkLp.pushLongPoll(messageNew({ groupId: vkLp.groupId, peerId: chat, id: 10 + i, text: text("lp", chat, i) }));
        }
      // Webhook and callback: Telegram and VK deliver each chat in order and retry until acknowledged.
      const deadline = () => (downUntil === Infinity ? Infinity : downUntil + SETTLE_MS);
      const hookRuns = CHATS.map(async (chat) => {
        const updates = Array.from({ length: PER_CHAT }, (_, i) => tgUpdate(chat, 10 + i, text("hook", chat, i)));
        const attempts = await deliverInOrder(updates, hook, deadline);
        return { chat, updates: updates.map((u) => ({ update_id: u.update_id, text: u.message.text })), attempts };
      });
      const cbRuns = CHATS.map(async (chat) => {
        const texts = Array.from({ length: PER_CHAT }, (_, i) => text("cb", chat, i));
        const events = texts.map((t, i) => messageNew({ groupId: vkCb.groupId, peerId: chat, id: 10 + i, text: t, secret: VK_SECRET }));
        return { chat, attempts: await deliverInOrder(events, callback, deadline), texts };
      });

      // Health while writes fail: probed until both say so, or 25 s.
      await eventually(async () => {
        const [h, r] = [await bed.probe(port, "healthz"), await bed.probe(port, "readyz")];
        during.healthz.push(h);
        during.readyz.push(r);
        return during.healthz.some((p) => p.status === 503 && /database/.test(p.body)) && during.readyz.some((p) => p.status === 503);
      }, 25_000).catch(() => undefined);
      // Let the fault last long enough for every path to meet it.
      await pause(Math.max(0, 10_000 - (Date.now() - downAt)));
      bed.db.up();
      downUntil = Date.now();

      hookLog = await Promise.all(hookRuns);
      cbLog = await Promise.all(cbRuns);
      const allAnswered = () =>
        CHATS.every(
          (chat) =>
            botMessages(bed.telegram, chat).filter((m) => /^echo: poll /.test(m.text)).length >= PER_CHAT &&
            botMessages(bed.telegram, chat).filter((m) => /^echo: hook /.test(m.text)).length >= PER_CHAT &&
            vkCb.sent.filter((s) => Number(s.params.peer_id) === chat).length >= PER_CHAT &&
            vkLp.sent.filter((s) => Number(s.params.peer_id) === chat).length >= PER_CHAT,
        ) && inflightAnswers().every((a) => a.length > 0);
      await eventually(allAnswered, SETTLE_MS, "every message answered").catch(() => undefined);
      // Late duplicates would show up now.
      await pause(1500);
      const probeBoth = async () => ({ healthz: await bed.probe(port, "healthz"), readyz: await bed.probe(port, "readyz") });
      afterUp = await eventually(async () => {
        const p = await probeBoth();
        return p.healthz.status === 200 && p.readyz.status === 200 ? p : undefined;
      }, 20_000).catch(probeBoth);
    });
    after(async () => {
      await bed?.close();
    });

    /** What each path's in-flight chat received: Telegram polling, webhook, VK callback, long poll. */
    const inflightAnswers = () => [
      botMessages(bed.telegram, INFLIGHT)
        .filter((m) => m.text.startsWith("echo: inflight poll"))
        .map((m) => m.text),
      botMessages(bed.telegram, INFLIGHT)
        .filter((m) => m.text.startsWith("echo: inflight hook"))
        .map((m) => m.text),
      vkCb.sent.filter((s) => Number(s.params.peer_id) === INFLIGHT).map((s) => s.params.message!),
      vkLp.sent.filter((s) => Number(s.params.peer_id) === INFLIGHT).map((s) => s.params.message!),
    ];

    /** Texts recorded as incoming rows of a bot. */
    const recorded = async (bot: string) => new Set((await bed.incoming(bot)).map((r) => r.text));
    /** Asserts each chat got its answers once each, in order. */
    const answeredOnceInOrder = (c: Checks, path: string, got: (chat: number) => string[]) =>
      c.check("each message answered exactly once, in order per chat", () => {
        for (const chat of CHATS) assert.deepEqual(got(chat), expected(path, chat), `chat ${chat}`);
      });

    test("Telegram polling: the getUpdates offset passes only recorded updates; each message answered once, in order", async () => {
      const c = new Checks();
      const passed = api.maxOffset.get(TG_POLL_TOKEN) ?? 0;
      const rows = await recorded("tg-poll");
      const acked = bed.telegram.storage.userMessages
        .filter((u) => u.botToken === TG_POLL_TOKEN && u.updateId < passed)
        .map((u) => String((u as { message?: { text?: string } }).message?.text));
      await c.check("0 acknowledged-but-unrecorded", () =>
        assert.deepEqual(
          acked.filter((t) => !rows.has(t)),
          [],
        ),
      );
      await answeredOnceInOrder(c, "poll", (chat) =>
        botMessages(bed.telegram, chat)
          .map((m) => m.text)
          .filter((t) => t.startsWith("echo: poll ")),
      );
      c.done();
    });

    test("Telegram webhook: 503 with Retry-After while the database is down, 200 only for recorded updates; each message answered once, in order", async () => {
      const c = new Checks();
      const rows = await recorded("tg-hook");
      const acked = hookLog.flatMap((h) => h.updates.filter((_, i) => h.attempts[i]!.some((a) => a.ok)).map((u) => u.text));
      await c.check("0 acknowledged-but-unrecorded (200 without a row)", () =>
        assert.deepEqual(
          acked.filter((t) => !rows.has(t)),
          [],
        ),
      );
      const downAttempts = hookLog.flatMap((h) => h.attempts.flat()).filter((a) => a.at < downUntil);
      await c.check("webhook calls answered while the database was down", () => assert.ok(downAttempts.length > 0, "none made"));
      await c.check("every webhook call during the outage: 503 with Retry-After", () =>
        assert.deepEqual(
          downAttempts.filter((a) => a.status !== 503 || a.retryAfter === null).map((a) => `${a.status} retry-after=${a.retryAfter}`),
          [],
        ),
      );
      await answeredOnceInOrder(c, "hook", (chat) =>
        botMessages(bed.telegram, chat)
          .map((m) => m.text)
          .filter((t) => t.startsWith("echo: hook ")),
      );
      c.done();
    });

    test("VK callback: `ok` only for recorded events, refused while the database is down; each message answered once, in order", async () => {
      const c = new Checks();
      const rows = await recorded("vk-cb");
      const acked = cbLog.flatMap((l) => l.texts.filter((_, i) => l.attempts[i]!.some((a) => a.ok)));
      await c.check("0 acknowledged-but-unrecorded (`ok` without a row)", () =>
        assert.deepEqual(
          acked.filter((t) => !rows.has(t)),
          [],
        ),
      );
      const downAttempts = cbLog.flatMap((l) => l.attempts.flat()).filter((a) => a.at < downUntil);
      await c.check("no `ok` while the database was down", () => assert.deepEqual(downAttempts.filter((a) => a.ok).length, 0));
      await answeredOnceInOrder(c, "cb", (chat) => vkCb.sent.filter((s) => Number(s.params.peer_id) === chat).map((s) => s.params.message!));
      c.done();
    });

    test("VK long poll: `ts` moves only past recorded events; each message answered once, in order", async () => {
      const c = new Checks();
      const rows = await recorded("vk-lp");
      const passed = Math.max(0, ...vkLp.lpChecks.map(Number));
      const acked = [...lpEvents].filter(([, n]) => n < passed).map(([t]) => t);
      await c.check("0 acknowledged-but-unrecorded", () =>
        assert.deepEqual(
          acked.filter((t) => !rows.has(t)),
          [],
        ),
      );
      await answeredOnceInOrder(c, "lp", (chat) => vkLp.sent.filter((s) => Number(s.params.peer_id) === chat).map((s) => s.params.message!));
      c.done();
    });

    test("answers in flight when the database went away: each answered once after it is back, without a restart", async () => {
      const c = new Checks();
      await c.check("answered once each (polling, webhook, VK callback, VK long poll)", () =>
        assert.deepEqual(inflightAnswers(), [["echo: inflight poll"], ["echo: inflight hook"], ["echo: inflight cb"], ["echo: inflight lp"]]),
      );
      await c.check("their rows `answered`", async () =>
        assert.deepEqual(
          (await bed.incoming())
            .filter((r) => r.text.startsWith("inflight"))
            .map((r) => `${r.text}: ${r.status}`)
            .sort(),
          ["inflight cb: answered", "inflight hook: answered", "inflight lp: answered", "inflight poll: answered"],
        ),
      );
      c.done();
    });

    test("books and health: ledger = balance, no open reservation, charged = answers; /healthz 503 naming `database` and /readyz 503 while writes fail, both 200 after", async () => {
      const c = new Checks();
      await checkBooks(c, bed, 1000 * 100);
      await c.check("every incoming row settled", async () =>
        assert.deepEqual(
          (await bed.incoming()).filter((r) => r.status !== "answered").map((r) => `${r.bot} ${r.text}: ${r.status}`),
          [],
        ),
      );
      await c.check("/healthz 503 naming `database` while writes fail", () =>
        assert.ok(
          during.healthz.some((p) => p.status === 503 && /database/.test(p.body)),
          `seen: ${[...new Set(during.healthz.map((p) => `${p.status} ${p.body.slice(0, 120)}`))].join(" | ")}`,
        ),
      );
      await c.check("/readyz 503 while it cannot record", () =>
        assert.ok(
          during.readyz.some((p) => p.status === 503),
          `seen: ${[...new Set(during.readyz.map((p) => `${p.status} ${p.body.slice(0, 80)}`))].join(" | ")}`,
        ),
      );
      await c.check("/healthz 200 after", () => assert.equal(afterUp?.healthz.status, 200, afterUp?.healthz.body));
      await c.check("/readyz 200 after", () => assert.equal(afterUp?.readyz.status, 200, afterUp?.readyz.body));
      c.done();
    });
  });
}
