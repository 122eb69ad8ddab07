import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { dialects } from "../support/db.js";
import { eventually } from "../support/harness.js";
import { VK_SECRET, VkHarness } from "../support/vk-harness.js";
import { messageNew, postCallback, wallReplyNew } from "../support/vk-server.js";

const ANSWER = "## Доставка\n\n**Бесплатно** от 1000 ₽, [условия](https://shop.example/d).\n\n- курьер\n- `самовывоз`";

for (const dialect of dialects()) {
  describe(`VK: plain text from Markdown, typing in dialogs (${dialect})`, () => {
    test("a dialog answer arrives without Markdown markers; setActivity typing comes before it; the stored answer keeps the model's text", async () => {
      const h = await VkHarness.start({ dialect });
      try {
        // Longer than the 500 ms before the first typing call (src/channels/typing.ts).
        h.llm.respond = () => ({ text: ANSWER, delayMs: 1000 });
        const r = await postCallback(h.callbackUrl, messageNew({ groupId: h.groupId, peerId: 701, id: 1, text: "доставка?", secret: VK_SECRET }));
        assert.equal(r.status, 200);
        await eventually(() => h.vk.sent.length === 1, 10_000, "answer");
        await h.pipeline.onIdle();
        assert.equal(h.vk.sent[0]!.params.message, "Доставка\n\nБесплатно от 1000 ₽, условия (https://shop.example/d).\n\n• курьер\n• самовывоз");
        const typing = h.vk.callsOf("messages.setActivity");
        assert.ok(typing.length >= 1);
        assert.deepEqual(
          { peer_id: typing[0]!.params.peer_id, type: typing[0]!.params.type, group_id: typing[0]!.params.group_id },
          { peer_id: "701", type: "typing", group_id: String(h.groupId) },
        );
        assert.ok(typing[0]!.at <= h.vk.sent[0]!.at, "typing before the answer");
        const out = (await h.messages()).find((m) => m.direction === "out");
        assert.equal(out!.text, ANSWER);
      } finally {
        await h.stop();
      }
    });

    test("a wall comment gets plain text and no typing; a failing setActivity changes nothing", async () => {
      const h = await VkHarness.start({ dialect });
      try {
        h.llm.respond = () => ({ text: ANSWER, delayMs: 1000 });
        h.vk.failNext("messages.setActivity", 10, "Internal server error", 100);
        await postCallback(h.callbackUrl, wallReplyNew({ groupId: h.groupId, postId: 77, commentId: 9001, fromId: 333, text: "размеры?", secret: VK_SECRET }));
        await postCallback(h.callbackUrl, messageNew({ groupId: h.groupId, peerId: 702, id: 2, text: "а в субботу?", secret: VK_SECRET }));
        await eventually(() => h.vk.comments.length === 1 && h.vk.sent.length === 1, 10_000, "both answers");
        await h.pipeline.onIdle();
        assert.equal(h.vk.comments[0]!.params.message, "Доставка\n\nБесплатно от 1000 ₽, условия (https://shop.example/d).\n\n• курьер\n• самовывоз");
        assert.equal(h.vk.sent[0]!.params.message, h.vk.comments[0]!.params.message);
        const typing = h.vk.callsOf("messages.setActivity");
        assert.ok(typing.length >= 1, "tried for the dialog");
        assert.ok(
          typing.every((c) => c.params.peer_id === "702"),
          "never for the comment",
        );
        const rows = await h.messages();
        assert.deepEqual(
          rows.filter((m) => m.direction === "in").map((m) => m.status),
          ["answered", "answered"],
        );
        assert.equal(await h.balance(), 50000 - 1000);
      } finally {
        await h.stop();
      }
    });

    test("reply.format: plain sends the model's text as written", async () => {
      const h = await VkHarness.start({ dialect, extraYaml: "reply:\n  format: plain" });
      try {
        h.llm.respond = () => ({ text: ANSWER });
        await postCallback(h.callbackUrl, messageNew({ groupId: h.groupId, peerId: 703, id: 3, text: "как есть", secret: VK_SECRET }));
        await eventually(() => h.vk.sent.length === 1, 10_000, "answer");
        assert.equal(h.vk.sent[0]!.params.message, ANSWER);
      } finally {
        await h.stop();
      }
    });
  });
}
