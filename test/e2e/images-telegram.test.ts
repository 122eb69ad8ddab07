import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { imageFetcherFor } from "../../src/channels/files.js";
import { replay } from "../../src/core/replay.js";
import { llmFor } from "../../src/runner.js";
import { dialects } from "../support/db.js";
import { eventually, Harness, TOKEN } from "../support/harness.js";
import { FakeBotFiles, jpegFixture, pngImage } from "../support/images.js";
import type { RecordedRequest } from "../support/openai-server.js";
import { userSays, waitForBotMessages } from "../support/telegram.js";

const MB = 1024 * 1024;
const kettle = jpegFixture("kettle");
const receipt = jpegFixture("receipt");
const screenshot = jpegFixture("screenshot");
const png = pngImage(5, 4, [10, 200, 30]);

/** The pictures in the last user message of a model request, decoded from their data: URLs. */
function imagesOf(req: RecordedRequest): Array<{ mime: string; bytes: Buffer; detail: string }> {
  const content = req.messages[req.messages.length - 1]!.content;
  if (!Array.isArray(content)) return [];
  return (content as Array<{ type: string; image_url?: { url: string; detail: string } }>)
    .filter((p) => p.type === "image_url")
    .map((p) => {
      const m = /^data:(image\/[a-z]+);base64,(.+)$/.exec(p.image_url!.url);
      assert.ok(m, `not a base64 data URL: ${p.image_url!.url.slice(0, 60)}`);
      return { mime: m[1]!, bytes: Buffer.from(m[2]!, "base64"), detail: p.image_url!.detail };
    });
}

/** The text the model reads in the last user message. */
function textOf(req: RecordedRequest): string {
  const content = req.messages[req.messages.length - 1]!.content;
  if (typeof content === "string") return content;
  return (content as Array<{ type: string; text?: string }>)
    .filter((p) => p.type === "text")
    .map((p) => p.text)
    .join(" ");
}

/** A Bot API `photo` array: small and large sizes of one picture, plus one above 5 MB. */
function photoSizes(id: string, bytes: Buffer) {
  return [
    { file_id: `${id}-s`, file_unique_id: `${id}s`, width: 90, height: 68, file_size: 300 },
    { file_id: `${id}-m`, file_unique_id: `${id}m`, width: 800, height: 600, file_size: bytes.length },
    { file_id: `${id}-xl`, file_unique_id: `${id}xl`, width: 2560, height: 1920, file_size: 6 * MB },
  ];
}

async function sendPhoto(h: Harness, userId: number, id: string, bytes: Buffer, extra: Record<string, unknown> = {}): Promise<void> {
  await userSays(h.telegram, TOKEN, userId, "", { text: undefined, photo: photoSizes(id, bytes), ...extra });
}

async function logText(h: Harness): Promise<string> {
  await h.logging.flush();
  return readFileSync(path.join(h.fixture.logDir, "shop-tg.log"), "utf8");
}

for (const dialect of dialects()) {
  describe(`Telegram pictures reach the model (${dialect})`, () => {
    let h: Harness;
    let files: FakeBotFiles;

    before(async () => {
      files = new FakeBotFiles(TOKEN);
      for (const [id, bytes] of [
        ["kettle", kettle],
        ["receipt", receipt],
        ["shot", screenshot],
        ["a1", kettle],
        ["a2", receipt],
        ["a3", screenshot],
        ["r", receipt],
      ] as const) {
        files.add(`${id}-m`, bytes);
        files.add(`${id}-s`, png, "png"); // a wrong size must never be the one sent
      }
      files.add("doc-png", png, "png");
      h = await Harness.start({
        dialect,
        llmYaml: "  vision: { enabled: true, detail: high, max_images: 4, max_bytes: 5MB }",
        files,
      });
    });
    after(async () => {
      await h?.stop();
    });

    test("a photo with a caption: the model gets the largest size within max_bytes as base64 data, never the token", async () => {
      await sendPhoto(h, 101, "kettle", kettle, { caption: "Чайник сломался, что делать?" });
      const [answer] = await waitForBotMessages(h.telegram, 101, 1);
      await h.pipeline.onIdle();
      const req = h.llm.requests.find((r) => textOf(r).includes("Чайник"))!;
      const imgs = imagesOf(req);
      assert.equal(imgs.length, 1);
      assert.equal(imgs[0]!.mime, "image/jpeg");
      assert.ok(imgs[0]!.bytes.equals(kettle), "the data URL carries the fixture's bytes");
      assert.equal(imgs[0]!.detail, "high");
      assert.equal(answer!.text, `echo: ${JSON.stringify(req.messages.at(-1)!.content)}`);
      const rows = await h.messages();
      const row = rows.find((r) => r.text === "Чайник сломался, что делать?")!;
      assert.equal(row.status, "answered");
      assert.deepEqual(JSON.parse(row.meta!).images, [{ file_id: "kettle-m", mime: "image/jpeg", width: 800, height: 600, size: kettle.length }]);
      assert.ok(files.getFileCalls.includes("kettle-m") && !files.getFileCalls.includes("kettle-xl"));
    });

    test("a photo without a caption and a picture sent as a PNG document are answered", async () => {
      await sendPhoto(h, 102, "shot", screenshot);
      await waitForBotMessages(h.telegram, 102, 1);
      await userSays(h.telegram, TOKEN, 103, "", {
        text: undefined,
        document: { file_id: "doc-png", file_unique_id: "dp", file_name: "scan.png", mime_type: "image/png", file_size: png.length },
      });
      await waitForBotMessages(h.telegram, 103, 1);
      const byShot = h.llm.requests.find((r) => imagesOf(r).some((i) => i.bytes.equals(screenshot)))!;
      assert.equal(textOf(byShot), "", "no caption: the user turn is the picture alone");
      const byDoc = h.llm.requests.find((r) => imagesOf(r).some((i) => i.mime === "image/png"))!;
      assert.ok(imagesOf(byDoc)[0]!.bytes.equals(png));
    });

    test("an album of 3 photos: each part recorded, one model call with the 3 pictures, one answer", async () => {
      const before = h.llm.requests.length;
      await sendPhoto(h, 104, "a1", kettle, { media_group_id: "album-1", caption: "Какой из них лучше?" });
      await sendPhoto(h, 104, "a2", receipt, { media_group_id: "album-1" });
      await sendPhoto(h, 104, "a3", screenshot, { media_group_id: "album-1" });
      await waitForBotMessages(h.telegram, 104, 1);
      await h.pipeline.onIdle();
      await new Promise((r) => setTimeout(r, 300));
      const reqs = h.llm.requests.slice(before).filter((r) => imagesOf(r).length > 0 && textOf(r).includes("Какой"));
      assert.equal(reqs.length, 1);
      assert.deepEqual(
        imagesOf(reqs[0]!).map((i) => i.bytes),
        [kettle, receipt, screenshot],
      );
      const parts = (await h.messages()).filter((r) => r.thread_key === "tg:104" && r.direction === "in");
      assert.deepEqual(
        parts.map((p) => p.status),
        ["answered", "skipped", "skipped"],
      );
      assert.match(parts[1]!.error!, new RegExp(`album part of message ${parts[0]!.id}`));
      assert.equal((await h.messages()).filter((r) => r.thread_key === "tg:104" && r.direction === "out").length, 1);
    });

    test("a 30 MB picture is refused by its size without downloading; the caption is answered", async () => {
      const calls = files.getFileCalls.length;
      await userSays(h.telegram, TOKEN, 105, "", {
        text: undefined,
        caption: "Вот чек",
        document: { file_id: "huge", file_unique_id: "hg", file_name: "scan.jpg", mime_type: "image/jpeg", file_size: 30 * MB },
      });
      const [answer] = await waitForBotMessages(h.telegram, 105, 1);
      assert.equal(answer!.text, "echo: [photo] Вот чек");
      assert.equal(files.getFileCalls.length, calls, "getFile was not called");
      assert.match(await logText(h), /30MB is over llm\.vision\.max_bytes \(5MB\)/);
    });

    test("the history carries [photo], not the picture again", async () => {
      await userSays(h.telegram, TOKEN, 101, "А гарантия есть?");
      await waitForBotMessages(h.telegram, 101, 2);
      const req = h.llm.requests.find((r) => textOf(r) === "А гарантия есть?")!;
      assert.ok(req.messages.some((m) => m.role === "user" && m.content === "[photo] Чайник сломался, что делать?"));
      assert.ok(
        req.messages.every((m) => typeof m.content === "string"),
        "no picture parts in the request",
      );
    });

    test("a model that refuses image input: one log line naming the bot and llm.vision.enabled, retried once without", async () => {
      const before = h.llm.requests.length;
      h.llm.script.push({
        status: 400,
        body: {
          error: {
            message: "Invalid content type. image_url is only supported by certain models.",
            type: "invalid_request_error",
            param: "messages.[1].content.[1].type",
          },
        },
      });
      await sendPhoto(h, 106, "receipt", receipt, { caption: "Сколько стоит?" });
      const [answer] = await waitForBotMessages(h.telegram, 106, 1);
      const reqs = h.llm.requests.slice(before);
      assert.equal(reqs.length, 2);
      assert.equal(imagesOf(reqs[0]!).length, 1);
      assert.equal(imagesOf(reqs[1]!).length, 0);
      assert.equal(answer!.text, "echo: [photo] Сколько стоит?");
      const lines = (await logText(h)).split("\n").filter((l) => l.includes("refused image input"));
      assert.equal(lines.length, 1);
      assert.match(lines[0]!, /bot shop-tg.*llm\.vision\.enabled: false/);
    });

    test("replay --send of a failed photo message fetches and sends the same picture again", async () => {
      const before = h.llm.requests.length;
      h.llm.script.push({ status: 400, body: { error: { message: "context too long", type: "invalid_request_error" } } });
      await sendPhoto(h, 107, "r", receipt, { caption: "Проверьте чек" });
      const row = await eventually(async () => (await h.messages()).find((r) => r.thread_key === "tg:107" && r.status === "failed"), 10_000, "failed row");
      const downloads = files.downloads.length;
      const summary = await replay(
        {
          bots: [h.bot],
          store: h.store,
          llmFor: () => {
            throw new Error("not a dry run");
          },
          pipelineFor: async () => h.pipeline,
        },
        { bots: [h.bot.name], ids: [row!.id] },
        { send: true },
      );
      assert.equal(summary.answered, 1);
      assert.equal(files.downloads.length, downloads + 1, "downloaded again at replay");
      const reqs = h.llm.requests.slice(before);
      assert.equal(reqs.length, 2);
      assert.ok(imagesOf(reqs[0]!)[0]!.bytes.equals(receipt) && imagesOf(reqs[1]!)[0]!.bytes.equals(receipt));
      await waitForBotMessages(h.telegram, 107, 1);
      // A dry run of the album's first part shows all three pictures again.
      const head = (await h.messages()).find((r) => r.thread_key === "tg:104" && r.status === "answered")!;
      const n = h.llm.requests.length;
      const dry = await replay(
        { bots: [h.bot], store: h.store, llmFor: (b) => llmFor(b, h.logging.forBot(b.name)), imagesFor: (b) => imageFetcherFor(b) },
        { bots: [h.bot.name], ids: [head.id] },
      );
      assert.equal(dry.results[0]!.outcome, "dry_run");
      assert.deepEqual(
        imagesOf(h.llm.requests[n]!).map((i) => i.bytes),
        [kettle, receipt, screenshot],
      );
    });

    test("no request to the model contains the bot token", () => {
      assert.ok(h.llm.requests.length >= 8);
      for (const r of h.llm.requests) {
        assert.ok(!JSON.stringify(r).includes(TOKEN), "token in a model request");
        assert.ok(!JSON.stringify(r).includes("/file/bot"), "file URL in a model request");
      }
    });
  });

  describe(`Telegram pictures with llm.vision off (${dialect})`, () => {
    let h: Harness;

    before(async () => {
      h = await Harness.start({
        dialect,
        llmYaml: '  vision: { enabled: false, no_vision_reply: "Я пока не умею смотреть фото — опишите словами, пожалуйста." }',
      });
    });
    after(async () => h?.stop());

    test("a photo without a caption gets no_vision_reply free of charge, status skipped, no model call", async () => {
      const balance = await h.balance();
      await sendPhoto(h, 201, "x", kettle);
      const [reply] = await waitForBotMessages(h.telegram, 201, 1);
      assert.equal(reply!.text, "Я пока не умею смотреть фото — опишите словами, пожалуйста.");
      await h.pipeline.onIdle();
      const rows = (await h.messages()).filter((r) => r.thread_key === "tg:201");
      assert.deepEqual(
        rows.map((r) => [r.direction, r.status, r.cost]),
        [
          ["in", "skipped", null],
          ["out", "sent", 0],
        ],
      );
      assert.equal(h.llm.requests.length, 0);
      assert.equal(await h.balance(), balance);
    });

    test("a photo with a caption is answered from the caption, with a [photo] placeholder and no picture", async () => {
      await sendPhoto(h, 202, "x", kettle, { caption: "Есть такой в наличии?" });
      const [reply] = await waitForBotMessages(h.telegram, 202, 1);
      assert.equal(reply!.text, "echo: [photo] Есть такой в наличии?");
      assert.ok(!JSON.stringify(h.llm.requests).includes("image_url"));
    });
  });
}

for (const dialect of dialects()) {
  describe(`Telegram album after a crash (${dialect})`, () => {
    test("parts recorded before a crash are answered once, together, by the next start's recovery", async () => {
      const files = new FakeBotFiles(TOKEN);
      files.add("c1", kettle);
      files.add("c2", receipt);
      const h = await Harness.start({
        dialect,
        start: false,
        llmYaml: "  vision: { enabled: true }",
        files,
      });
      try {
        // What a process killed inside the album window leaves: every part recorded, none answered.
        const now = Date.now();
        for (const [i, id] of ["c1", "c2"].entries()) {
          await h.store.messages.insertIncoming({
            bot: "shop-tg",
            channel: "tg",
            thread_key: "tg:301",
            chat_id: "301",
            user_id: "301",
            user_name: "U",
            text: i === 0 ? "Подойдёт?" : "",
            dedupe_key: `301:${50 + i}`,
            channel_message_id: String(50 + i),
            meta: { kind: "messages", target: {}, images: [{ file_id: id, mime: "image/jpeg" }], group: "g-crash" },
            status: "received",
            created_ms: now - 5000 + i,
          });
        }
        await h.startBots();
        await waitForBotMessages(h.telegram, 301, 1);
        await h.pipeline.onIdle();
        assert.equal(h.llm.requests.length, 1);
        assert.deepEqual(
          imagesOf(h.llm.requests[0]!).map((i) => i.bytes),
          [kettle, receipt],
        );
        assert.equal(textOf(h.llm.requests[0]!), "Подойдёт?");
        const rows = (await h.messages()).filter((r) => r.thread_key === "tg:301");
        assert.deepEqual(
          rows.map((r) => [r.direction, r.status]),
          [
            ["in", "answered"],
            ["in", "skipped"],
            ["out", "sent"],
          ],
        );
      } finally {
        await h.stop();
      }
    });
  });
}
