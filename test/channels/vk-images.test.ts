import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { dialects } from "../support/db.js";
import { eventually } from "../support/harness.js";
import { jpegFixture } from "../support/images.js";
import type { RecordedRequest } from "../support/openai-server.js";
import { VK_SECRET, VkHarness } from "../support/vk-harness.js";
import { messageNew, postCallback, wallReplyNew } from "../support/vk-server.js";

const kettle = jpegFixture("kettle");
const receipt = jpegFixture("receipt");

/** Bytes of the pictures in the last user message of a model request (base64 data URLs). */
function pictures(req: RecordedRequest): Buffer[] {
  const content = req.messages[req.messages.length - 1]!.content;
  if (!Array.isArray(content)) return [];
  return (content as Array<{ type: string; image_url?: { url: string } }>)
    .filter((p) => p.type === "image_url")
    .map((p) => {
      assert.match(p.image_url!.url, /^data:image\/jpeg;base64,/);
      return Buffer.from(p.image_url!.url.split(",")[1]!, "base64");
    });
}

for (const dialect of dialects()) {
  describe(`VK photo attachments reach the model (${dialect})`, () => {
    test("message_new and wall_reply_new photos: the largest size is downloaded and sent as data; a broken URL leaves the text answered", async () => {
      const h = await VkHarness.start({ dialect, llmYaml: "  vision: { enabled: true }" });
      try {
        const photo = h.vk.photo("kettle", kettle);
        await postCallback(h.callbackUrl, messageNew({ groupId: h.groupId, peerId: 701, id: 1, text: "Что с ним?", secret: VK_SECRET, attachments: [photo] }));
        await eventually(() => h.vk.sent.length === 1, 5000, "answer to the message");
        const dm = h.llm.requests[0]!;
        assert.deepEqual(pictures(dm), [kettle]);
        assert.deepEqual(h.vk.cdnFetches, ["kettle"], "only the largest size (w) is fetched");
        await h.pipeline.onIdle();
        const row = (await h.messages()).find((r) => r.thread_key === "vk:dm:701" && r.direction === "in")!;
        assert.equal(row.status, "answered");
        const stored = JSON.parse(row.meta!).images as Array<{ url: string; width: number }>;
        assert.equal(stored.length, 1);
        assert.match(stored[0]!.url, /\/cdn\/kettle\?size=w/);

        // A comment that is only a photo.
        await postCallback(
          h.callbackUrl,
          wallReplyNew({
            groupId: h.groupId,
            postId: 10,
            commentId: 77,
            fromId: 702,
            text: "",
            secret: VK_SECRET,
            attachments: [h.vk.photo("receipt", receipt)],
          }),
        );
        await eventually(() => h.vk.comments.length === 1, 5000, "answer to the comment");
        const comment = h.llm.requests[1]!;
        assert.deepEqual(pictures(comment), [receipt]);
        assert.equal(h.vk.comments[0]!.params.reply_to_comment, "77");

        // The CDN answers 404: recorded, answered from the text, the log says why.
        const broken = h.vk.photo("gone", kettle);
        (broken.photo.sizes as Array<{ url: string }>)[1]!.url = (broken.photo.sizes as Array<{ url: string }>)[1]!.url.replace("/cdn/gone", "/cdn/missing");
        await postCallback(h.callbackUrl, messageNew({ groupId: h.groupId, peerId: 703, id: 2, text: "А этот?", secret: VK_SECRET, attachments: [broken] }));
        await eventually(() => h.vk.sent.length === 2, 5000, "answer despite the broken picture");
        assert.equal(h.vk.sent[1]!.params.message, "echo: [photo] А этот?");
        await h.logging.flush();
        assert.match(readFileSync(path.join(h.fixture.logDir, "club-vk.log"), "utf8"), /picture from 127\.0\.0\.1:\d+: download answered HTTP 404/);
      } finally {
        await h.stop();
      }
    });
  });
}
