import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { type DraftVerdict, startDraftProxy } from "../support/botapi-proxy.js";
import { dialects } from "../support/db.js";
import { eventually, Harness, type HarnessOptions, TOKEN } from "../support/harness.js";
import { streamPieces } from "../support/openai-server.js";
import { botMessages, userSays, waitForBotMessages } from "../support/telegram.js";

/** A long answer streamed a word a chunk: about 2 s at 100 ms a chunk. */
const ANSWER =
  "Our sofa comes in green, blue and grey. Delivery takes three days within the city and is free over five hundred; assembly is included, and the old sofa is taken away on request.";

/** The Telegram harness behind a proxy that answers `sendMessageDraft` (by `refuse`) and passes the rest to the emulator. */
async function streamingBot(dialect: "sqlite" | "mysql", o: Partial<HarnessOptions> = {}, refuse?: (n: number, chatId: number) => DraftVerdict) {
  let proxy!: Awaited<ReturnType<typeof startDraftProxy>>;
  const h = await Harness.start({
    dialect,
    ...o,
    apiRoot: async (root) => {
      proxy = await startDraftProxy(root, refuse && ((n, call) => refuse(n, call.chat_id)));
      return proxy.url;
    },
  });
  return { h, proxy };
}

for (const dialect of dialects()) {
  describe(`streamed drafts in Telegram private chats (${dialect})`, () => {
    const closers: Array<() => Promise<void>> = [];
    after(async () => {
      for (const close of closers.reverse()) await close();
    });
    const open = async (...args: Parameters<typeof streamingBot>) => {
      const bot = await streamingBot(...args);
      closers.push(
        () => bot.proxy.stop(),
        () => bot.h.stop(),
      );
      return bot;
    };

    test("a slow answer shows growing drafts, at most one per 300 ms, then one sendMessage, recorded and charged once", async () => {
      const { h, proxy } = await open(dialect);
      h.llm.respond = () => ({ text: ANSWER, chunkDelayMs: 100 });
      await userSays(h.telegram, TOKEN, 501, "What colours does the sofa come in?");
      const [reply] = await waitForBotMessages(h.telegram, 501, 1);
      assert.equal(reply!.text, ANSWER);
      await eventually(async () => (await h.messages()).some((m) => m.direction === "in" && m.status === "answered"), 5000, "answer recorded");

      const request = h.llm.requests[0]!;
      assert.equal(request.stream, true, "the model is asked to stream");
      assert.deepEqual(request.stream_options, { include_usage: true });
      const drafts = proxy.drafts;
      assert.ok(drafts.length >= 3, `at least 3 drafts while the answer grew (got ${drafts.length})`);
      assert.ok(drafts.length < streamPieces(ANSWER).length, "updates between two draft calls are merged into one");
      assert.notEqual(drafts[0]!.draft_id, 0);
      for (const [i, d] of drafts.entries()) {
        assert.equal(d.chat_id, 501);
        assert.equal(d.draft_id, drafts[0]!.draft_id, "one draft_id for the whole answer (changes are animated)");
        assert.ok(d.text.length > 0 && ANSWER.startsWith(d.text), `draft ${i} is a beginning of the answer: ${JSON.stringify(d.text)}`);
        if (i > 0) {
          assert.ok(d.text.length > drafts[i - 1]!.text.length, "each draft shows more");
          // Calls start at least 300 ms apart (chunks come every 100 ms); their arrival here may
          // shift with the load of the machine, so the bound is looser than the rule.
          assert.ok(d.at - drafts[i - 1]!.at >= 200, `draft ${i} came ${Math.round(d.at - drafts[i - 1]!.at)} ms after the one before`);
        }
      }

      await new Promise((r) => setTimeout(r, 300));
      assert.equal(proxy.calls.filter((m) => m === "sendMessage").length, 1, "exactly one sendMessage");
      assert.equal(botMessages(h.telegram, 501).length, 1);
      const rows = await h.messages();
      const incoming = rows.filter((m) => m.direction === "in");
      const outgoing = rows.filter((m) => m.direction === "out");
      assert.equal(incoming.length, 1);
      assert.equal(incoming[0]!.status, "answered");
      assert.equal(incoming[0]!.cost, 500);
      assert.deepEqual(
        outgoing.map((m) => m.text),
        [ANSWER],
        "the one recorded answer is the whole text; drafts are not recorded",
      );
      assert.ok((outgoing[0]!.completion_tokens ?? 0) > 0, "usage arrives with the stream");
      assert.equal(await h.balance(), 500 * 100 - 500);
      assert.equal(await h.store.balance.ledgerSum("default"), await h.balance(), "the ledger sums to the balance");
    });

    test("a draft call that reaches the Bot API late is taken before the answer, so no preview follows the answer", async () => {
      // Every draft after the first reaches the Bot API 1.5 s late: when the model ends, one is in flight.
      const { h, proxy } = await open(dialect, {}, (n) => (n > 0 ? { delayMs: 1500 } : undefined));
      h.llm.respond = () => ({ text: ANSWER, chunkDelayMs: 100 });
      await userSays(h.telegram, TOKEN, 701, "What colours does the sofa come in?");
      const [reply] = await waitForBotMessages(h.telegram, 701, 1, 15_000);
      assert.equal(reply!.text, ANSWER);
      // A draft still on its way would be taken within 1.5 s.
      await new Promise((r) => setTimeout(r, 2000));
      assert.ok(proxy.drafts.length >= 2, `a late draft was sent (got ${proxy.drafts.length})`);
      assert.deepEqual(proxy.order.at(-1), "sendMessage", `the answer came last: ${proxy.order.join(", ")}`);
      assert.equal(proxy.order.filter((m) => m === "sendMessage").length, 1);
    });

    test("a refused or cut draft call (429, 400, network) ends the drafts of that answer and changes nothing else", async () => {
      const verdicts: Record<number, DraftVerdict> = {
        601: { error_code: 429, description: "Too Many Requests: retry after 5", retry_after: 5 },
        602: { error_code: 400, description: "Bad Request: TEXTDRAFT_PEER_INVALID" },
        603: "drop",
      };
      const { h, proxy } = await open(dialect, {}, (_n, chatId) => verdicts[chatId]);
      h.llm.respond = () => ({ text: ANSWER, chunkDelayMs: 40 });
      const chats = [601, 602, 603];
      for (const chat of chats) await userSays(h.telegram, TOKEN, chat, `question from ${chat}`);
      for (const chat of chats) assert.equal((await waitForBotMessages(h.telegram, chat, 1))[0]!.text, ANSWER);
      await eventually(async () => (await h.messages()).filter((m) => m.direction === "in" && m.status === "answered").length === 3, 5000, "all recorded");
      await new Promise((r) => setTimeout(r, 300));
      for (const chat of chats) {
        assert.equal(proxy.drafts.filter((d) => d.chat_id === chat).length, 1, `chat ${chat}: no draft after the failed one`);
        assert.equal(botMessages(h.telegram, chat).length, 1, `chat ${chat}: answered once`);
      }
      assert.equal(proxy.calls.filter((m) => m === "sendMessage").length, 3);
      const incoming = (await h.messages()).filter((m) => m.direction === "in");
      assert.deepEqual(
        incoming.map((m) => [m.status, m.cost]),
        chats.map(() => ["answered", 500]),
      );
      assert.equal(await h.balance(), 500 * 100 - 3 * 500);
      assert.equal(await h.store.balance.ledgerSum("default"), await h.balance());
    });

    test("groups get no drafts and the model is not asked to stream; llm.stream: false turns drafts off in private chats", async () => {
      const { h, proxy } = await open(dialect);
      h.llm.respond = () => ({ text: ANSWER, chunkDelayMs: 20 });
      const group = h.telegram.getClient(TOKEN, { userId: 701, chatId: -100701, firstName: "U", userName: "u", type: "group" });
      await group.sendMessage(group.makeMessage("@TestNameBot what colours?"));
      assert.equal((await waitForBotMessages(h.telegram, -100701, 1))[0]!.text, ANSWER);
      assert.equal(proxy.drafts.length, 0, "no sendMessageDraft in a group");
      assert.equal(h.llm.requests[0]!.stream, undefined, "a group answer is not streamed");

      const off = await open(dialect, { llmYaml: "  stream: false" });
      off.h.llm.respond = () => ({ text: ANSWER, chunkDelayMs: 20 });
      await userSays(off.h.telegram, TOKEN, 702, "What colours?");
      assert.equal((await waitForBotMessages(off.h.telegram, 702, 1))[0]!.text, ANSWER);
      assert.equal(off.proxy.drafts.length, 0, "no drafts with llm.stream: false");
      assert.equal(off.h.llm.requests[0]!.stream, undefined);
    });

    test("a streamed tool call is assembled from its deltas and run; the answer after it streams as drafts", async () => {
      const { h, proxy } = await open(dialect, { extraYaml: "features:\n  leads: {}" });
      const args = { name: "Иван Петров", phone: "+7 900 123-45-67", note: "зелёный диван" };
      h.llm.script.push({ toolCalls: [{ name: "save_lead", arguments: args }], chunkDelayMs: 30 }, { text: ANSWER, chunkDelayMs: 100 });
      await userSays(h.telegram, TOKEN, 801, "Иван Петров, +7 900 123-45-67, хочу зелёный диван");
      assert.equal((await waitForBotMessages(h.telegram, 801, 1))[0]!.text, ANSWER);
      assert.deepEqual(
        h.llm.requests.map((r) => r.stream),
        [true, true],
      );
      const assistant = h.llm.requests[1]!.messages.at(-2)!;
      assert.deepEqual(assistant.tool_calls, [{ id: "call_1_0", type: "function", function: { name: "save_lead", arguments: JSON.stringify(args) } }]);
      const result = h.llm.requests[1]!.messages.at(-1)!;
      assert.equal(result.tool_call_id, "call_1_0");
      assert.match(String(result.content), /^ok: lead #\d+ saved .*phone: \+79001234567/);
      const leads = await h.store.database.db.selectFrom("leads").selectAll().execute();
      assert.deepEqual(
        leads.map((l) => [l.name, l.phone, l.note]),
        [["Иван Петров", "+79001234567", "зелёный диван"]],
      );
      assert.ok(proxy.drafts.length >= 3, `drafts of the answer after the tool call (got ${proxy.drafts.length})`);
      for (const d of proxy.drafts) assert.ok(ANSWER.startsWith(d.text), "drafts show the answer, not the tool call");
      await eventually(async () => (await h.messages()).some((m) => m.direction === "in" && m.status === "answered"), 5000, "answer recorded");
      assert.equal(await h.balance(), 500 * 100 - 500);
    });
  });
}
