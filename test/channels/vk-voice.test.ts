import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { vkVoice } from "../../src/channels/vk/translate.js";
import { dialects } from "../support/db.js";
import { eventually } from "../support/harness.js";
import { VK_SECRET, VkHarness } from "../support/vk-harness.js";
import { messageNew, postCallback } from "../support/vk-server.js";

/** Fake audio: an OGG magic, then the words; the test server transcribes it back to the words. */
function fakeOgg(words: string): Buffer {
  return Buffer.concat([Buffer.from("OggS"), Buffer.from(words, "utf8")]);
}

describe("VK audio_message translation", () => {
  test("link_ogg first, then link_mp3; a transcript only once VK finished it (transcript_state done)", () => {
    const am = (extra: Record<string, unknown>) => [
      { type: "photo", photo: {} },
      { type: "audio_message", audio_message: { duration: 12.6, ...extra } },
    ];
    assert.deepEqual(vkVoice(am({ link_ogg: "https://psv4.userapi.com/a.ogg", link_mp3: "https://psv4.userapi.com/a.mp3" })), {
      kind: "audio_message",
      url: "https://psv4.userapi.com/a.ogg",
      mime: "audio/ogg",
      duration_s: 13,
    });
    assert.deepEqual(vkVoice(am({ link_mp3: "https://psv4.userapi.com/a.mp3", transcript: "привет", transcript_state: "in_progress" })), {
      kind: "audio_message",
      url: "https://psv4.userapi.com/a.mp3",
      mime: "audio/mpeg",
      duration_s: 13,
    });
    assert.deepEqual(vkVoice(am({ transcript: " привет ", transcript_state: "done" })), {
      kind: "audio_message",
      duration_s: 13,
      transcript: "привет",
      transcribed_by: "channel",
    });
    assert.equal(vkVoice(am({})), undefined, "nothing to download or read");
    assert.equal(vkVoice([{ type: "photo", photo: {} }]), undefined);
  });
});

for (const dialect of dialects()) {
  describe(`VK audio_message (${dialect})`, () => {
    test("VK's own transcript is answered without calling the transcription API; without one the link_ogg audio is transcribed and charged per minute", async () => {
      const h = await VkHarness.start({ dialect, llmYaml: "  transcription: { enabled: true, cost_per_minute: 1.2 }" });
      try {
        const balance = await h.balance();
        const withTranscript = h.vk.audioMessage("hello", fakeOgg("не должно скачиваться"), 20, "Здравствуйте, есть доставка в Казань?");
        await postCallback(h.callbackUrl, messageNew({ groupId: h.groupId, peerId: 801, id: 1, text: "", secret: VK_SECRET, attachments: [withTranscript] }));
        await eventually(() => h.vk.sent.length === 1, 5000, "answer to the voice with a transcript");
        assert.equal(h.vk.sent[0]!.params.message, "echo: Здравствуйте, есть доставка в Казань?");
        assert.equal(h.llm.transcriptions.length, 0, "no transcription call");
        assert.deepEqual(h.vk.cdnFetches, [], "nothing downloaded");
        await h.pipeline.onIdle();
        const first = (await h.messages()).find((r) => r.thread_key === "vk:dm:801" && r.direction === "in")!;
        assert.equal(first.status, "answered");
        assert.equal(first.text, "Здравствуйте, есть доставка в Казань?");
        assert.equal(JSON.parse(first.meta!).voice.transcribed_by, "channel");
        assert.equal(await h.balance(), balance - 500, "VK's transcript costs nothing extra");

        const plain = h.vk.audioMessage("order", fakeOgg("Хочу заказать торт"), 45);
        await postCallback(h.callbackUrl, messageNew({ groupId: h.groupId, peerId: 802, id: 2, text: "", secret: VK_SECRET, attachments: [plain] }));
        await eventually(() => h.vk.sent.length === 2, 5000, "answer to the voice without a transcript");
        assert.equal(h.vk.sent[1]!.params.message, "echo: Хочу заказать торт");
        assert.deepEqual(h.vk.cdnFetches, ["order.ogg"]);
        assert.equal(h.llm.transcriptions.length, 1);
        assert.equal(h.llm.transcriptions[0]!.filename, "voice.ogg");
        await h.pipeline.onIdle();
        // 5 + 1.2 × 45/60 = 5.90 credits.
        assert.equal(await h.balance(), balance - 500 - 590);
        assert.equal(await h.store.balance.ledgerSum("default"), await h.balance());
        const second = (await h.messages()).find((r) => r.thread_key === "vk:dm:802" && r.direction === "in")!;
        assert.equal(second.text, "Хочу заказать торт");
      } finally {
        await h.stop();
      }
    });
  });
}
