import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { runBots } from "../support/cli.js";
import { dialects } from "../support/db.js";
import { checkBooks, Checks, FaultBed, modelYaml, pause } from "../support/faults.js";
import { eventually } from "../support/harness.js";
import { lastUserText } from "../support/openai-server.js";
import { requestParam, startResetProxy } from "../support/reset-proxy.js";
import { botMessages, userSays } from "../support/telegram.js";
import { FakeVk, messageNew } from "../support/vk-server.js";

const TG_TOKEN = "720001:TEST-token_reset";
/** Chat whose first answer is reset after the API read it; a chat answered normally; the chat of the long answer. */
const RESET = 21;
const NORMAL = 22;
const LONG = 23;
/** A 20 KB answer: five blocks of ~4000 characters, one Telegram message each (split at "\n\n"). */
const LONG_ANSWER = [1, 2, 3, 4, 5].map((n) => `[part ${n}] ${"word ".repeat(790)}`.trim()).join("\n\n");
const SETTLED = ["answered", "unconfirmed", "failed", "expired", "no_balance", "filtered", "skipped"];

for (const dialect of dialects()) {
  describe(`the channel API resets the connection after reading a send, under bots start (${dialect})`, () => {
    let bed: FaultBed;
    const vk = new FakeVk("vk1.a.reset-token", 4545);
    let tgProxy: Awaited<ReturnType<typeof startResetProxy>>;
    let vkProxy: Awaited<ReturnType<typeof startResetProxy>>;
    let balanceBefore = 0;
    /** Answers the user saw and sends the API received before `bots replay --send`, per case. */
    const beforeReplay = { tgReset: 0, tgResetRequests: 0, vkReset: 0, long: [] as string[] };
    let replay = { code: -1, stdout: "", stderr: "" } as { code: number | null; stdout: string; stderr: string };

    const sendsTo = (p: typeof tgProxy, method: string, key: string, id: number) =>
      // The method exactly: `/sendMessage` is not `/sendMessageDraft` (a preview, not a send).
      p.requests.filter((r) => r.path.split("?")[0]!.endsWith(`/${method}`) && requestParam(r.body, key) === String(id));
    const partOf = (t: string) => Number(/^\[part (\d)\]/.exec(t)?.[1] ?? 0);

    before(async () => {
      bed = await FaultBed.create(dialect);
      await vk.start();
      bed.closers.push(() => vk.stop());
      let tgReset = 0;
      let refused = 0;
      tgProxy = await startResetProxy(bed.telegram.config.apiURL, (r) => {
        if (!r.path.endsWith("/sendMessage")) return undefined;
        if (requestParam(r.body, "chat_id") === String(RESET) && tgReset++ === 0) return "reset-after-read";
        // Part 4 of the long answer is refused once, as the Bot API refuses a message.
        if (requestParam(r.body, "chat_id") === String(LONG) && partOf(requestParam(r.body, "text") ?? "") === 4 && refused++ === 0)
          return { refuse: { status: 400, body: { ok: false, error_code: 400, description: "Bad Request: message text is empty" } } };
        return undefined;
      });
      let vkReset = 0;
      vkProxy = await startResetProxy(vk.url.replace(/\/method$/, ""), (r) =>
        r.path.endsWith("/messages.send") && requestParam(r.body, "peer_id") === String(RESET) && vkReset++ === 0 ? "reset-after-read" : undefined,
      );
      bed.closers.push(tgProxy.stop, vkProxy.stop);
      bed.llm.respond = (req) => ({ text: lastUserText(req) === "long please" ? LONG_ANSWER : `echo: ${lastUserText(req)}` });
      const model = modelYaml(bed.llm);
      bed.fx.bot("tg-shop", ["channel: tg", "prompt: prompts/p.md", ...model, "tg:", "  token: ${TG}", `  api_root: ${tgProxy.url}`].join("\n"));
      bed.fx.bot(
        "vk-shop",
        [
          "channel: vk",
          "prompt: prompts/p.md",
          ...model,
          "vk:",
          "  token: ${VK}",
          `  group_id: ${vk.groupId}`,
          `  api_base_url: ${vkProxy.url}/method`,
          "  mode: longpoll",
          "  answer: [messages]",
        ].join("\n"),
      );
      bed.env = { TG: TG_TOKEN, VK: vk.token };
      balanceBefore = (await bed.store.balance.get("default"))!.balance;
      const { child } = await bed.start();

      await userSays(bed.telegram, TG_TOKEN, RESET, "tg ambiguous");
      await userSays(bed.telegram, TG_TOKEN, NORMAL, "tg plain");
      await userSays(bed.telegram, TG_TOKEN, LONG, "long please");
      vk.pushLongPoll(
        messageNew({ groupId: vk.groupId, peerId: RESET, id: 1, text: "vk ambiguous" }),
        messageNew({ groupId: vk.groupId, peerId: NORMAL, id: 2, text: "vk plain" }),
      );
      // Every message settles (whatever its outcome) within the bound.
      await eventually(
        async () => {
          const rows = await bed.incoming();
          return rows.length === 5 && rows.every((r) => SETTLED.includes(r.status));
        },
        60_000,
        "every message settled",
      ).catch(() => undefined);
      await pause(1000);
      beforeReplay.tgReset = botMessages(bed.telegram, RESET).length;
      beforeReplay.tgResetRequests = sendsTo(tgProxy, "sendMessage", "chat_id", RESET).length;
      beforeReplay.vkReset = vk.sent.filter((s) => s.params.peer_id === String(RESET)).length;
      beforeReplay.long = botMessages(bed.telegram, LONG).map((m) => `part ${partOf(m.text)}`);
      child.kill("SIGTERM");
      await eventually(() => child.exitCode !== null || child.signalCode !== null, 30_000, "bots start stopped").catch(() => undefined);
      // The operator's catch-all: send what was never answered.
      replay = await runBots(["replay", "--send", "--since", "1h"], { cwd: bed.fx.root, timeoutMs: 90_000 });
    });
    after(async () => {
      await bed?.close();
    });

    const row = async (bot: string, text: string) => (await bed.incoming(bot)).find((r) => r.text === text);

    test("Telegram sendMessage reset after the Bot API read it: one request, the row `unconfirmed` with its charge, not sent again by `bots replay --send`", async () => {
      const c = new Checks();
      await c.check("exactly one sendMessage request received by the Bot API", () => assert.equal(beforeReplay.tgResetRequests, 1));
      await c.check("the user got the answer once", () => assert.equal(beforeReplay.tgReset, 1));
      const r = await row("tg-shop", "tg ambiguous");
      await c.check("the row is `unconfirmed`", () => assert.equal(r?.status, "unconfirmed", r?.error ?? ""));
      await c.check("its charge stands", () => assert.ok((r?.cost ?? 0) > 0, `cost ${r?.cost}`));
      await c.check("`bots replay --send` ran", () => assert.equal(replay.code, 0, replay.stderr));
      await c.check("not sent again by `bots replay --send`", () => {
        assert.equal(sendsTo(tgProxy, "sendMessage", "chat_id", RESET).length, beforeReplay.tgResetRequests, "requests");
        assert.equal(botMessages(bed.telegram, RESET).length, beforeReplay.tgReset, "messages");
      });
      await c.check("the other chat answered once", () =>
        assert.deepEqual(
          botMessages(bed.telegram, NORMAL).map((m) => m.text),
          ["echo: tg plain"],
        ),
      );
      c.done();
    });

    test("VK messages.send reset after VK read it: the user gets the answer once, the charge stands (answered or unconfirmed, never failed and refunded), not sent again by `bots replay --send`", async () => {
      const c = new Checks();
      await c.check("the user got the answer once", () => assert.equal(beforeReplay.vkReset, 1));
      const r = await row("vk-shop", "vk ambiguous");
      await c.check("the row is `answered` (random_id confirmed it) or `unconfirmed`", () =>
        assert.ok(["answered", "unconfirmed"].includes(r?.status ?? ""), `${r?.status}: ${r?.error ?? ""}`),
      );
      await c.check("its charge stands", () => assert.ok((r?.cost ?? 0) > 0, `cost ${r?.cost}`));
      await c.check("not sent again by `bots replay --send`", () => assert.equal(vk.sent.filter((s) => s.params.peer_id === String(RESET)).length, 1));
      await c.check("the other peer answered once", () =>
        assert.deepEqual(
          vk.sent.filter((s) => s.params.peer_id === String(NORMAL)).map((s) => s.params.message),
          ["echo: vk plain"],
        ),
      );
      c.done();
    });

    test("a 5-part Telegram answer with part 4 refused: parts 1–3 delivered once; `bots replay --send` sends only the missing parts", async () => {
      const c = new Checks();
      await c.check("before the replay: parts 1–3, once each", () => assert.deepEqual(beforeReplay.long, ["part 1", "part 2", "part 3"]));
      await c.check("after the replay: every part exactly once, in order", () =>
        assert.deepEqual(
          botMessages(bed.telegram, LONG).map((m) => `part ${partOf(m.text)}`),
          ["part 1", "part 2", "part 3", "part 4", "part 5"],
        ),
      );
      const r = await row("tg-shop", "long please");
      await c.check("the long answer ends `answered`", () => assert.equal(r?.status, "answered", r?.error ?? ""));
      c.done();
    });

    test("books: ledger = balance, no open reservation, charged = the cost of answers recorded", async () => {
      const c = new Checks();
      await checkBooks(c, bed, balanceBefore);
      c.done();
    });
  });
}
