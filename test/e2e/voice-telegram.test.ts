import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { BotConfig } from "../../src/config/schema.js";
import { replay } from "../../src/core/replay.js";
import { llmFor } from "../../src/runner.js";
import { startBotApiProxy } from "../support/botapi-proxy.js";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { cli, finished } from "../support/cli.js";
import { dialects } from "../support/db.js";
import { eventually, Harness, privateText, TOKEN } from "../support/harness.js";
import { FakeBotFiles } from "../support/images.js";
import { lastUserText } from "../support/openai-server.js";
import { Scenario } from "../support/scenario.js";
import { botMessages, userSays, waitForBotMessages } from "../support/telegram.js";

/** Fake audio: an OGG magic, then the words; the test server transcribes it back to the words. */
function fakeOgg(words: string): Buffer {
  return Buffer.concat([Buffer.from("OggS"), Buffer.from(words, "utf8")]);
}

/** Bot API `Message.voice` of a file the fake Bot API serves. */
function voice(fileId: string, bytes: Buffer, duration: number) {
  return { file_id: fileId, file_unique_id: `u-${fileId}`, duration, mime_type: "audio/ogg", file_size: bytes.length };
}

const LLM_YAML = [
  "  transcription:",
  "    enabled: true",
  "    cost_per_minute: 1.5",
  "    max_seconds: 60",
  "    too_long_reply: Голосовое слишком длинное, напишите текстом.",
].join("\n");

for (const dialect of dialects()) {
  describe(`Telegram voice messages (${dialect})`, () => {
    let h: Harness;
    let files: FakeBotFiles;
    const words = {
      order: "Где мой заказ номер 42?",
      hang: "Можно вернуть чайник?",
      down: "Сколько стоит доставка?",
      note: "Покажите кружок",
      long: "очень длинное сообщение",
    };

    before(async () => {
      files = new FakeBotFiles(TOKEN);
      files.add("v-order", fakeOgg(words.order), "oga");
      files.add("v-hang", fakeOgg(words.hang), "oga");
      files.add("v-down", fakeOgg(words.down), "oga");
      files.add("v-note", fakeOgg(words.note), "mp4");
      files.add("v-long", fakeOgg(words.long), "oga");
      h = await Harness.start({
        dialect,
        llmYaml: LLM_YAML,
        files,
      });
    });
    after(async () => {
      await h?.stop();
    });

    test("a voice message is transcribed once, answered like text, charged cost_per_reply + per-minute cost, and shown in bots dialogs", async () => {
      const balance = await h.balance();
      await userSays(h.telegram, TOKEN, 201, "", { text: undefined, voice: voice("v-order", fakeOgg(words.order), 42) });
      const [answer] = await waitForBotMessages(h.telegram, 201, 1);
      await h.pipeline.onIdle();
      assert.equal(answer!.text, `echo: ${words.order}`, "the model read the transcript");
      assert.equal(h.llm.transcriptions.length, 1);
      const t = h.llm.transcriptions[0]!;
      assert.equal(t.model, "whisper-1");
      assert.equal(t.language, "ru");
      assert.equal(t.filename, "voice.ogg");
      assert.equal(t.type, "audio/ogg");
      assert.ok(t.bytes.equals(fakeOgg(words.order)), "the audio was uploaded as bytes");
      assert.ok(!JSON.stringify(t.headers).includes(TOKEN));
      const rows = await h.messages();
      const row = rows.find((r) => r.thread_key === "tg:201" && r.direction === "in")!;
      assert.equal(row.status, "answered");
      assert.equal(row.text, words.order);
      const meta = JSON.parse(row.meta!) as { voice: Record<string, unknown> };
      assert.deepEqual(meta.voice, {
        kind: "voice",
        file_id: "v-order",
        duration_s: 42,
        mime: "audio/ogg",
        size: fakeOgg(words.order).length,
        transcript: words.order,
        transcribed_by: "model",
      });
      // 5 credits a reply + 1.5 credits a minute × 42 s = 5 + 1.05 credits.
      const out = rows.find((r) => r.reply_to_id === row.id)!;
      assert.equal(out.cost, 500 + 105);
      assert.equal(await h.balance(), balance - 605);
      assert.equal(await h.store.balance.ledgerSum("default"), await h.balance());
      const shown = await cli(["--config-dir", h.fixture.configDir, "--db", h.db.url, "dialogs", "shop-tg", "tg:201"], {
        OPENAI_API_KEY: "sk-test-key-123456",
        TG_TOKEN: TOKEN,
      });
      assert.equal(shown.code, 0, shown.stderr);
      assert.ok(shown.stdout.includes(words.order), shown.stdout);
      assert.ok(shown.stdout.includes(`echo: ${words.order}`), shown.stdout);
      // The history of the thread carries the transcript for the next turn.
      await userSays(h.telegram, TOKEN, 201, "А когда привезут?");
      await waitForBotMessages(h.telegram, 201, 2);
      const next = h.llm.requests.find((r) => lastUserText(r) === "А когда привезут?")!;
      assert.ok(next.messages.some((m) => m.role === "user" && m.content === words.order));
      assert.equal(h.llm.transcriptions.length, 1, "not transcribed again");
    });

    test("a round video (video_note) is transcribed as mp4", async () => {
      const bytes = fakeOgg(words.note);
      await userSays(h.telegram, TOKEN, 202, "", {
        text: undefined,
        video_note: { file_id: "v-note", file_unique_id: "u-note", length: 240, duration: 5, file_size: bytes.length },
      });
      const [answer] = await waitForBotMessages(h.telegram, 202, 1);
      assert.equal(answer!.text, `echo: ${words.note}`);
      const t = h.llm.transcriptions.find((x) => x.bytes.equals(bytes))!;
      assert.equal(t.filename, "note.mp4");
    });

    test("too long: too_long_reply is sent free, the message is skipped, nothing transcribed or charged", async () => {
      const balance = await h.balance();
      const calls = h.llm.transcriptions.length;
      const requests = h.llm.requests.length;
      await userSays(h.telegram, TOKEN, 203, "", { text: undefined, voice: voice("v-long", fakeOgg(words.long), 61) });
      const [reply] = await waitForBotMessages(h.telegram, 203, 1);
      await h.pipeline.onIdle();
      assert.equal(reply!.text, "Голосовое слишком длинное, напишите текстом.");
      const row = (await h.messages()).find((r) => r.thread_key === "tg:203" && r.direction === "in")!;
      assert.equal(row.status, "skipped");
      assert.match(row.error ?? "", /61 s is over llm\.transcription\.max_seconds \(60\)/);
      assert.equal(h.llm.transcriptions.length, calls);
      assert.equal(h.llm.requests.length, requests);
      assert.equal(await h.balance(), balance);
      assert.ok(!files.getFileCalls.includes("v-long"), "not even downloaded");
    });

    test("a restart while the model answers does not transcribe again: the stored transcript is answered", async () => {
      const calls = h.llm.transcriptions.length;
      h.llm.script.push({ hang: true });
      await userSays(h.telegram, TOKEN, 204, "", { text: undefined, voice: voice("v-hang", fakeOgg(words.hang), 12) });
      await eventually(() => h.llm.requests.some((r) => lastUserText(r) === words.hang), 10_000, "the model asked");
      assert.equal(h.llm.transcriptions.length, calls + 1);
      // The drain deadline interrupts the model call: the message stays `received`, nothing stays reserved.
      await h.running!.stop(50);
      const stranded = (await h.messages()).find((r) => r.thread_key === "tg:204" && r.direction === "in")!;
      assert.equal(stranded.status, "received");
      assert.equal(stranded.text, words.hang, "the transcript was stored before the model was asked");
      const balance = await h.balance();
      await h.startBots();
      await waitForBotMessages(h.telegram, 204, 1);
      await h.pipeline.onIdle();
      assert.equal(botMessages(h.telegram, 204)[0]!.text, `echo: ${words.hang}`);
      assert.equal(h.llm.transcriptions.length, calls + 1, "recovery used the stored transcript");
      // 5 + 1.5 × 12/60 = 5.30 credits, charged once.
      assert.equal(await h.balance(), balance - 530);
      assert.equal(await h.store.balance.ledgerSum("default"), await h.balance());
    });

    test("transcription API down: the message is kept (failed, nothing charged) and bots replay --send answers it later", async () => {
      const balance = await h.balance();
      h.llm.transcriptionDown = true;
      const calls = h.llm.transcriptions.length;
      await userSays(h.telegram, TOKEN, 205, "", { text: undefined, voice: voice("v-down", fakeOgg(words.down), 30) });
      const row = (await eventually(
        async () => (await h.messages()).find((r) => r.thread_key === "tg:205" && r.direction === "in" && r.status === "failed"),
        15_000,
        "the voice message failed",
      ))!;
      assert.ok(h.llm.transcriptions.length - calls >= 2, "retried like the model");
      assert.match(row.error ?? "", /transcription: LLM_UNAVAILABLE/);
      assert.equal(row.text, "");
      assert.equal(await h.balance(), balance);
      assert.equal(botMessages(h.telegram, 205).length, 0);
      h.llm.transcriptionDown = false;
      // A dry run neither transcribes nor asks the model: there is no text yet.
      const requests = h.llm.requests.length;
      const dry = await replay({ bots: [h.bot], store: h.store, llmFor: (b) => llmFor(b, h.logging.forBot(b.name)) }, { bots: [h.bot.name], ids: [row.id] });
      assert.equal(dry.results[0]!.outcome, "error");
      assert.match(dry.results[0]!.error ?? "", /voice message not transcribed yet/);
      assert.equal(h.llm.requests.length, requests);
      const downCalls = h.llm.transcriptions.length;
      const summary = await replay(
        {
          bots: [h.bot],
          store: h.store,
          llmFor: () => {
            throw new Error("not a dry run");
          },
          pipelineFor: async () => h.pipeline,
        },
        { bots: [h.bot.name], ids: [row.id] },
        { send: true },
      );
      assert.equal(summary.answered, 1);
      assert.equal(h.llm.transcriptions.length, downCalls + 1);
      const [answer] = await waitForBotMessages(h.telegram, 205, 1);
      assert.equal(answer!.text, `echo: ${words.down}`);
      const done = (await h.messages()).find((r) => r.id === row.id)!;
      assert.equal(done.status, "answered");
      assert.equal(done.text, words.down);
      assert.equal(await h.balance(), balance - 575);
      assert.equal(await h.store.balance.ledgerSum("default"), await h.balance());
    });

    test("transcription off: no_voice_reply is sent free, or the message is only recorded skipped when it is null", async () => {
      const off = (no_voice_reply: string | null): BotConfig => ({
        ...h.bot,
        llm: { ...h.bot.llm, transcription: { ...h.bot.llm.transcription, enabled: false, no_voice_reply } },
      });
      const calls = h.llm.transcriptions.length;
      const balance = await h.balance();
      const sent: string[] = [];
      const withReply = h.pipelineTo((_chat, text) => sent.push(text), { bot: off("Я пока не слушаю голосовые, напишите текстом.") });
      const v = { kind: "voice" as const, file_id: "v-order", duration_s: 10, mime: "audio/ogg" };
      await withReply.submit({ ...privateText(206, 1, ""), voice: v });
      await withReply.onIdle();
      assert.deepEqual(sent, ["Я пока не слушаю голосовые, напишите текстом."]);
      const silent = h.pipelineTo((_chat, text) => sent.push(text), { bot: off(null) });
      await silent.submit({ ...privateText(207, 1, ""), voice: v });
      await silent.onIdle();
      assert.equal(sent.length, 1, "nothing sent with no_voice_reply null");
      const rows = (await h.messages()).filter((r) => r.thread_key === "tg:206" || r.thread_key === "tg:207");
      const incoming = rows.filter((r) => r.direction === "in");
      assert.deepEqual(
        incoming.map((r) => [r.thread_key, r.status, r.error]),
        [
          ["tg:206", "skipped", "voice message; llm.transcription.enabled is false"],
          ["tg:207", "skipped", "voice message; llm.transcription.enabled is false"],
        ],
      );
      assert.deepEqual(
        rows.filter((r) => r.direction === "out").map((r) => [r.thread_key, r.cost]),
        [["tg:206", 0]],
      );
      assert.equal(h.llm.transcriptions.length, calls);
      assert.equal(await h.balance(), balance);
    });

    test("no request to the model API contains the bot token or a file URL", () => {
      for (const r of [...h.llm.requests, ...h.llm.transcriptions]) {
        const s = JSON.stringify({ ...r, bytes: undefined });
        assert.ok(!s.includes(TOKEN) && !s.includes("/file/bot"), "token or file URL in a model request");
      }
    });
  });

  describe(`Telegram voice messages and kill -9 (${dialect})`, () => {
    test("kill -9 while the model answers a transcribed voice: the next start answers it from the stored transcript, transcribed once, charged once", async () => {
      const s = await Scenario.create(dialect);
      const files = new FakeBotFiles(TOKEN);
      const words = "Перезвоните мне завтра утром";
      files.add("v-kill", fakeOgg(words), "oga");
      const proxy = await startBotApiProxy(s.telegram.config.apiURL, () => undefined, files);
      s.closers.push(() => proxy.stop());
      try {
        const yaml = path.join(s.fx.configDir, "shop-tg.yaml");
        writeFileSync(yaml, readFileSync(yaml, "utf8").replace("  timeout_s: 20", "  timeout_s: 20\n  transcription: { enabled: true, cost_per_minute: 2 }"));
        s.llm.script.push({ hang: true });
        const a = await s.start([], { TG_API_ROOT: proxy.url });
        await userSays(s.telegram, TOKEN, 301, "", { text: undefined, voice: voice("v-kill", fakeOgg(words), 90) });
        await eventually(() => s.llm.requests.some((r) => lastUserText(r) === words), 20_000, "the model asked with the transcript");
        a.kill("SIGKILL");
        await finished(a, 10_000);
        const [stranded] = await s.incoming();
        assert.equal(stranded!.status, "received");
        assert.equal(stranded!.text, words);
        assert.equal(s.llm.transcriptions.length, 1);

        const b = await s.start([], { TG_API_ROOT: proxy.url });
        const [answer] = await waitForBotMessages(s.telegram, 301, 1, 20_000);
        assert.equal(answer!.text, `echo: ${words}`);
        await eventually(async () => (await s.countStatus("answered")) === 1, 10_000, "answered");
        b.kill("SIGTERM");
        assert.equal((await finished(b, 30_000)).code, 0);
        assert.equal(s.llm.transcriptions.length, 1, "not transcribed again after the kill");
        assert.equal(files.getFileCalls.filter((f) => f === "v-kill").length, 1, "not downloaded again");
        // 5 credits + 2 credits a minute × 90 s.
        assert.equal((await s.incoming())[0]!.cost, 500 + 300);
        await s.assertBooks(1000 * 100);
      } finally {
        await s.close();
      }
    });
  });
}
