import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { markdownToEntities, splitFormatted } from "../../src/lib/markdown.js";
import { type Intercept, startBotApiProxy } from "../support/botapi-proxy.js";
import { cli } from "../support/cli.js";
import { dialects } from "../support/db.js";
import { eventually, Harness, type HarnessOptions, TOKEN } from "../support/harness.js";
import { ENV, globals } from "../support/replay-fixture.js";
import { botMessages, userSays, waitForBotMessages } from "../support/telegram.js";

/** One Bot API call as the proxy saw it. */
interface Seen {
  method: string;
  body: Record<string, unknown>;
  at: number;
}

/**
 * A harness whose Bot API calls pass through a proxy: every call is recorded with its arrival
 * time; `sendChatAction` (which the emulator lacks) is answered by `chatAction` (true by
 * default); `decide` may answer other calls itself.
 */
async function proxied(o: Omit<HarnessOptions, "apiRoot">, decide: Intercept = () => undefined, chatAction: Intercept = () => ({ result: true })) {
  const seen: Seen[] = [];
  let proxy: Awaited<ReturnType<typeof startBotApiProxy>> | undefined;
  const h = await Harness.start({
    ...o,
    apiRoot: async (root) => {
      proxy = await startBotApiProxy(root, (method, body, raw) => {
        seen.push({ method, body, at: Date.now() });
        return method === "sendChatAction" ? chatAction(method, body, raw) : decide(method, body, raw);
      });
      return proxy.url;
    },
  });
  const stop = h.stop.bind(h);
  // The proxy goes with the harness (it would keep the test process alive).
  h.stop = async () => {
    await stop();
    await proxy?.stop();
  };
  return { h, seen, of: (method: string, chat: number) => seen.filter((s) => s.method === method && Number(s.body.chat_id) === chat) };
}

/** The incoming row with `text` once settled, and the stored answer to it. */
async function settled(h: Harness, text: string) {
  const incoming = await eventually(
    async () => (await h.messages()).find((m) => m.direction === "in" && m.text === text && !["received", "sending", "delivering"].includes(m.status ?? "")),
    20_000,
    `'${text}' settled`,
  );
  assert.ok(incoming);
  const answer = (await h.messages()).find((m) => m.direction === "out" && m.reply_to_id === incoming.id);
  return { incoming, answer };
}

async function logText(h: Harness): Promise<string> {
  await h.logging.flush();
  return readFileSync(path.join(h.fixture.logDir, "shop-tg.log"), "utf8");
}

const ANSWER =
  "### Итог 🎉\n\nДоставка **бесплатно** от 1000 ₽, см. [условия](https://shop.example/условия).\n\n- быстро\n- `код`: ~~нет~~\n\n```js\nlet a = 1;\n```";

for (const dialect of dialects()) {
  describe(`formatted answers and typing in Telegram (${dialect})`, () => {
    test("a Markdown answer arrives as entities (UTF-16 offsets); the stored answer keeps the model's text", async () => {
      const { h, of } = await proxied({ dialect });
      try {
        h.llm.respond = () => ({ text: ANSWER });
        await userSays(h.telegram, TOKEN, 301, "доставка?");
        const [msg] = await waitForBotMessages(h.telegram, 301, 1);
        assert.equal(msg!.text, "Итог 🎉\n\nДоставка бесплатно от 1000 ₽, см. условия.\n\n• быстро\n• код: нет\n\nlet a = 1;");
        assert.deepEqual(msg!.entities, [
          { type: "bold", offset: 0, length: 7 },
          { type: "bold", offset: 18, length: 9 },
          { type: "text_link", offset: 43, length: 7, url: "https://shop.example/%D1%83%D1%81%D0%BB%D0%BE%D0%B2%D0%B8%D1%8F" },
          { type: "code", offset: 64, length: 3 },
          { type: "strikethrough", offset: 69, length: 3 },
          { type: "pre", offset: 74, length: 10, language: "js" },
        ]);
        assert.equal(msg!.parse_mode, undefined, "entities, never parse_mode");
        const { incoming, answer } = await settled(h, "доставка?");
        assert.equal(incoming.status, "answered");
        assert.equal(answer!.text, ANSWER);
        assert.equal(of("sendMessage", 301).length, 1);
      } finally {
        await h.stop();
      }
    });

    test("entities refused with 400: the same part goes out plain, once; answered and charged once", async () => {
      const { h, of } = await proxied({ dialect }, (method, body) =>
        method === "sendMessage" && body.entities
          ? { error_code: 400, description: "Bad Request: can't parse entities: Unsupported start tag at byte offset 3" }
          : undefined,
      );
      try {
        h.llm.respond = () => ({ text: ANSWER });
        await userSays(h.telegram, TOKEN, 302, "условия?");
        const { incoming, answer } = await settled(h, "условия?");
        assert.equal(incoming.status, "answered");
        const sends = of("sendMessage", 302);
        assert.equal(sends.length, 2, "one with entities, refused; one plain");
        assert.ok(sends[0]!.body.entities);
        assert.equal(sends[1]!.body.entities, undefined);
        assert.equal(sends[1]!.body.text, sends[0]!.body.text, "the same part");
        const arrived = botMessages(h.telegram, 302);
        assert.equal(arrived.length, 1);
        assert.equal(arrived[0]!.text, markdownToEntities(ANSWER).text);
        assert.equal(answer!.text, ANSWER);
        assert.equal(Number(answer!.cost), 500);
        assert.equal(await h.balance(), 50000 - 500);
        assert.equal(await h.store.balance.ledgerSum("default"), await h.balance());
        assert.match(await logText(h), /"level":"warn"[^\n]*Telegram refused the formatting; this part is sent as plain text/);
      } finally {
        await h.stop();
      }
    });

    test("a 10 KB formatted answer: parts within 4096 units, no entity cut, as many parts as stored", async () => {
      const { h, of } = await proxied({ dialect });
      try {
        const long = Array.from({ length: 60 }, (_, i) => `**Пункт ${i}** 😀 — ${"описание ".repeat(18)}[ссылка](https://shop.example/${i})`).join("\n\n");
        h.llm.respond = () => ({ text: long });
        await userSays(h.telegram, TOKEN, 303, "всё");
        const { incoming, answer } = await settled(h, "всё");
        assert.equal(incoming.status, "answered");
        assert.equal(answer!.text, long);
        const expected = splitFormatted(markdownToEntities(long), 4096);
        assert.ok(expected.length >= 3, `${expected.length} parts`);
        const arrived = botMessages(h.telegram, 303);
        assert.equal(arrived.length, expected.length);
        assert.equal(incoming.parts_sent, expected.length);
        assert.equal(of("sendMessage", 303).length, expected.length);
        let bold = 0;
        for (const m of arrived) {
          assert.ok(m.text.length <= 4096);
          const entities = m.entities as Array<{ type: string; offset: number; length: number }>;
          for (const e of entities) {
            const covered = m.text.slice(e.offset, e.offset + e.length);
            if (e.type === "bold") {
              bold++;
              assert.match(covered, /^Пункт \d+$/, "a whole bold span");
            } else assert.equal(covered, "ссылка");
          }
        }
        assert.equal(bold, 60, "every bold span arrived whole");
      } finally {
        await h.stop();
      }
    });

    test("a formatted answer in parts, part 2 refused: replay --send sends the same remaining parts; a part refused for its entities there goes plain and counts once", async () => {
      let toChat = 0;
      let replaying = false;
      const { h, of } = await proxied({ dialect }, (method, body) => {
        if (method !== "sendMessage" || Number(body.chat_id) !== 307) return undefined;
        toChat++;
        if (!replaying) return toChat === 2 ? { error_code: 400, description: "Bad Request: message is too long" } : undefined;
        return body.entities && String(body.text).startsWith("Пункт 4") ? { error_code: 400, description: "Bad Request: can't parse entities" } : undefined;
      });
      try {
        const long = Array.from({ length: 5 }, (_, i) => `**Пункт ${i}** ${"слово ".repeat(600)}\n\n\`\`\`\n${"код\n".repeat(20)}\`\`\``).join("\n\n");
        const expected = splitFormatted(markdownToEntities(long), 4096);
        assert.ok(expected.length >= 4, `${expected.length} parts`);
        h.llm.respond = () => ({ text: long });
        await userSays(h.telegram, TOKEN, 307, "части");
        const first = await settled(h, "части");
        assert.equal(first.incoming.status, "partial");
        assert.equal(first.incoming.parts_sent, 1);
        await h.running!.stop(2000);
        h.running = undefined;

        replaying = true;
        const r = await cli([...globals(h), "replay", "--send", "--since", "1h"], ENV);
        assert.equal(r.code, 0, r.stderr + r.stdout);
        const after = await settled(h, "части");
        assert.equal(after.incoming.status, "answered");
        assert.equal(after.incoming.parts_sent, expected.length);
        assert.equal(after.answer!.text, long);
        const arrived = botMessages(h.telegram, 307);
        assert.deepEqual(
          arrived.map((m) => m.text),
          expected.map((p) => p.text),
          "the same parts as the first attempt would have sent",
        );
        arrived.forEach((m, i) => {
          if (expected[i]!.text.startsWith("Пункт 4")) assert.equal(m.entities, undefined, "the refused part went plain");
          else assert.deepEqual(m.entities, expected[i]!.entities);
        });
        assert.equal(of("sendMessage", 307).length, 1 + 1 + (expected.length - 1) + 1, "part 1, refused part 2, the rest, one plain resend");
        assert.equal(await h.balance(), 50000 - 500, "charged once");
        assert.equal(await h.store.balance.ledgerSum("default"), await h.balance());
      } finally {
        await h.stop();
      }
    });

    test("typing: sent before the model answers, renewed during a 9.5 s answer, none after the answer", async () => {
      const { h, of } = await proxied({ dialect, timeoutS: 30 });
      try {
        h.llm.respond = () => ({ text: "**готово**", delayMs: 9500 });
        await userSays(h.telegram, TOKEN, 304, "долго?");
        const [msg] = await waitForBotMessages(h.telegram, 304, 1, 30_000);
        assert.equal(msg!.text, "готово");
        const answeredAt = h.llm.requests[0]!.at + 9500;
        const typing = of("sendChatAction", 304);
        assert.ok(typing.length >= 3, `${typing.length} sendChatAction calls`);
        assert.ok(typing[0]!.at < answeredAt, "the first before the model answered");
        assert.ok(typing.every((t) => t.body.action === "typing"));
        const sentAt = of("sendMessage", 304)[0]!.at;
        assert.ok(
          typing.every((t) => t.at <= sentAt),
          "none after the answer was sent",
        );
        // The renewal has stopped: nothing more comes in the next renewal period.
        await new Promise((r) => setTimeout(r, 4500));
        assert.equal(of("sendChatAction", 304).length, typing.length);
        assert.equal((await settled(h, "долго?")).incoming.status, "answered");
      } finally {
        await h.stop();
      }
    });

    test("an answer ready within half a second arrives without typing; a slower one shows it first", async () => {
      const { h, of } = await proxied({ dialect });
      try {
        h.llm.respond = () => ({ text: "сразу" });
        await userSays(h.telegram, TOKEN, 306, "быстро?");
        await settled(h, "быстро?");
        h.llm.respond = () => ({ text: "чуть позже", delayMs: 1500 });
        await userSays(h.telegram, TOKEN, 307, "медленно?");
        await settled(h, "медленно?");
        assert.deepEqual(of("sendChatAction", 306), [], "no typing before a quick answer");
        const typing = of("sendChatAction", 307);
        assert.equal(typing.length, 1, "one typing call before the slow answer");
        assert.ok(typing[0]!.at <= of("sendMessage", 307)[0]!.at);
      } finally {
        await h.stop();
      }
    });

    test("a failing sendChatAction changes nothing else", async () => {
      const { h, of } = await proxied(
        { dialect },
        () => undefined,
        () => ({ error_code: 500, description: "Internal Server Error" }),
      );
      try {
        // Longer than the 500 ms before the first typing call (src/channels/typing.ts).
        h.llm.respond = () => ({ text: "**да**", delayMs: 1000 });
        await userSays(h.telegram, TOKEN, 305, "работает?");
        const { incoming, answer } = await settled(h, "работает?");
        assert.equal(incoming.status, "answered");
        assert.ok(of("sendChatAction", 305).length >= 1, "typing was tried");
        assert.equal(of("sendMessage", 305).length, 1);
        const arrived = botMessages(h.telegram, 305);
        assert.deepEqual(
          arrived.map((m) => [m.text, m.entities]),
          [["да", [{ type: "bold", offset: 0, length: 2 }]]],
        );
        assert.equal(Number(answer!.cost), 500);
        assert.equal(await h.balance(), 50000 - 500);
        assert.match(await logText(h), /"level":"debug"[^\n]*sendChatAction failed/);
      } finally {
        await h.stop();
      }
    });

    test("reply.format: plain sends the model's text as written, without entities", async () => {
      const { h } = await proxied({ dialect, extraYaml: "reply:\n  format: plain" });
      try {
        h.llm.respond = () => ({ text: ANSWER });
        await userSays(h.telegram, TOKEN, 306, "как есть");
        const [msg] = await waitForBotMessages(h.telegram, 306, 1);
        assert.equal(msg!.text, ANSWER);
        assert.equal(msg!.entities, undefined);
      } finally {
        await h.stop();
      }
    });
  });
}
