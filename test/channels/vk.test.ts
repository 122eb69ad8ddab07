import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ChannelError } from "../../src/errors.js";
import { dialects } from "../support/db.js";
import { eventually } from "../support/harness.js";
import { lastUserText } from "../support/openai-server.js";
import { VK_CONFIRMATION, VK_SECRET, VkHarness } from "../support/vk-harness.js";
import { messageNew, postCallback, wallPostNew, wallReplyNew } from "../support/vk-server.js";

for (const dialect of dialects()) {
  describe(`VK channel, Callback API (${dialect})`, () => {
    test("confirmation is answered with the configured string; another community's is refused", async () => {
      const h = await VkHarness.start({ dialect });
      try {
        const ok = await postCallback(h.callbackUrl, { type: "confirmation", group_id: h.groupId });
        assert.deepEqual(ok, { status: 200, text: VK_CONFIRMATION });
        const other = await postCallback(h.callbackUrl, { type: "confirmation", group_id: h.groupId + 1 });
        assert.equal(other.status, 403);
        assert.notEqual(other.text, VK_CONFIRMATION);
      } finally {
        await h.stop();
      }
    });

    test("a wrong or missing secret gets 403 and nothing is recorded or sent", async () => {
      const h = await VkHarness.start({ dialect });
      try {
        const wrong = await postCallback(h.callbackUrl, messageNew({ groupId: h.groupId, peerId: 501, id: 1, text: "hi", secret: "not-the-secret" }));
        assert.equal(wrong.status, 403);
        const missing = await postCallback(h.callbackUrl, messageNew({ groupId: h.groupId, peerId: 501, id: 2, text: "hi" }));
        assert.equal(missing.status, 403);
        // A good event afterwards is processed: proof that the server works and the 403s were refusals.
        const good = await postCallback(h.callbackUrl, messageNew({ groupId: h.groupId, peerId: 502, id: 3, text: "hello", secret: VK_SECRET }));
        assert.deepEqual(good, { status: 200, text: "ok" });
        await eventually(() => h.vk.sent.length === 1, 5000, "answer to the good event");
        await h.pipeline.onIdle();
        const rows = await h.messages();
        assert.deepEqual(
          rows.map((r) => r.chat_id),
          ["502", "502"],
        );
        assert.equal(h.vk.sent[0]!.params.peer_id, "502");
      } finally {
        await h.stop();
      }
    });

    test("the same message_new sent 3 times (X-Retry-Counter) is answered once with random_id", async () => {
      const h = await VkHarness.start({ dialect });
      try {
        const event = messageNew({ groupId: h.groupId, peerId: 601, id: 17, text: "Сколько стоит доставка?", secret: VK_SECRET });
        const first = await postCallback(h.callbackUrl, event);
        const again = await Promise.all([
          postCallback(h.callbackUrl, event, { "X-Retry-Counter": "1" }),
          postCallback(h.callbackUrl, event, { "X-Retry-Counter": "2" }),
        ]);
        for (const r of [first, ...again]) assert.deepEqual(r, { status: 200, text: "ok" });
        // The same message under a new event_id (e.g. long poll and callback both on) is a duplicate too.
        await postCallback(h.callbackUrl, { ...event, event_id: "f".repeat(40) });
        await eventually(() => h.vk.sent.length >= 1, 5000, "answer");
        await h.pipeline.onIdle();
        assert.equal(h.vk.sent.length, 1);
        assert.equal(h.llm.requests.length, 1);
        const sent = h.vk.sent[0]!.params;
        assert.equal(sent.peer_id, "601");
        assert.equal(sent.message, "echo: Сколько стоит доставка?");
        assert.match(sent.random_id!, /^\d+$/);
        assert.notEqual(sent.random_id, "0");
        assert.equal(sent.access_token, h.vk.token);
        assert.equal(sent.v, "5.199");
        const rows = await h.messages();
        assert.equal(rows.length, 2);
        assert.equal(rows[0]!.status, "answered");
        assert.equal(rows[0]!.thread_key, "vk:dm:601");
        assert.equal(rows[0]!.user_id, "601");
        assert.equal(rows[1]!.reply_to_id, rows[0]!.id);
        assert.equal(await h.balance(), 50000 - 500);
      } finally {
        await h.stop();
      }
    });

    test("a comment is answered as a reply to it, with the post text in the prompt", async () => {
      const h = await VkHarness.start({ dialect });
      try {
        const postEvent = wallPostNew({
          groupId: h.groupId,
          postId: 77,
          date: Math.floor(Date.now() / 1000),
          text: "Новая коллекция осени уже в магазине!",
          secret: VK_SECRET,
        });
        assert.equal((await postCallback(h.callbackUrl, postEvent)).text, "ok");
        assert.equal((await postCallback(h.callbackUrl, postEvent, { "X-Retry-Counter": "1" })).text, "ok");
        const postRows = await h.store.database.db.selectFrom("posts").selectAll().execute();
        assert.equal(postRows.length, 1, "a resent wall_post_new is stored once");
        const stored = await h.store.posts.get("club-vk", String(-h.groupId), "77");
        assert.equal(stored?.text, "Новая коллекция осени уже в магазине!");
        await postCallback(
          h.callbackUrl,
          wallReplyNew({ groupId: h.groupId, postId: 77, commentId: 9001, fromId: 333, text: "А размеры какие?", secret: VK_SECRET }),
        );
        await eventually(() => h.vk.comments.length === 1, 5000, "comment answer");
        const c = h.vk.comments[0]!.params;
        assert.equal(c.owner_id, String(-h.groupId));
        assert.equal(c.post_id, "77");
        assert.equal(c.reply_to_comment, "9001");
        assert.equal(c.from_group, String(h.groupId));
        assert.equal(c.message, "echo: А размеры какие?");
        const system = String(h.llm.requests[0]!.messages[0]!.content);
        assert.equal(system, "Comment prompt. Post: Новая коллекция осени уже в магазине!");
        await h.pipeline.onIdle();
        const [incoming] = await h.messages();
        assert.equal(incoming!.thread_key, `vk:post:${-h.groupId}_77:333`);
        assert.equal(incoming!.status, "answered");
        assert.equal(h.vk.sent.length, 0);
      } finally {
        await h.stop();
      }
    });

    test("a comment on a post never seen fetches it with wall.getById; a prompt without {{post_text}} gets the post appended", async () => {
      const h = await VkHarness.start({ dialect, commentsPrompt: "Answer comments politely." });
      try {
        h.vk.posts.set(`${-h.groupId}_78`, {
          id: 78,
          owner_id: -h.groupId,
          from_id: -h.groupId,
          date: Math.floor(Date.now() / 1000),
          text: "Скидка 20% на всё",
        });
        await postCallback(
          h.callbackUrl,
          wallReplyNew({ groupId: h.groupId, postId: 78, commentId: 9101, fromId: 334, text: "На обувь тоже?", secret: VK_SECRET }),
        );
        await eventually(() => h.vk.comments.length === 1, 5000, "comment answer");
        assert.equal(h.vk.callsOf("wall.getById")[0]!.params.posts, `${-h.groupId}_78`);
        assert.equal(String(h.llm.requests[0]!.messages[0]!.content), "Answer comments politely.\n\nPost being commented on:\nСкидка 20% на всё");
        assert.equal((await h.store.posts.get("club-vk", String(-h.groupId), "78"))?.text, "Скидка 20% на всё");
      } finally {
        await h.stop();
      }
    });

    test("the community's own comment is never answered", async () => {
      const h = await VkHarness.start({ dialect });
      try {
        const own = await postCallback(
          h.callbackUrl,
          wallReplyNew({ groupId: h.groupId, postId: 80, commentId: 9201, fromId: -h.groupId, text: "Спасибо за вопрос!", secret: VK_SECRET }),
        );
        assert.equal(own.text, "ok");
        await postCallback(
          h.callbackUrl,
          wallReplyNew({ groupId: h.groupId, postId: 80, commentId: 9202, fromId: 335, text: "А доставка?", secret: VK_SECRET }),
        );
        await eventually(() => h.vk.comments.length === 1, 5000, "answer to the user's comment");
        await h.pipeline.onIdle();
        assert.equal(h.vk.comments[0]!.params.reply_to_comment, "9202");
        const rows = await h.messages();
        assert.equal(rows.filter((r) => r.direction === "in").length, 1);
        assert.equal(rows[0]!.user_id, "335");
      } finally {
        await h.stop();
      }
    });

    test("vk.answer: [messages] leaves comments alone", async () => {
      const h = await VkHarness.start({ dialect, vkYaml: "  answer: [messages]" });
      try {
        await postCallback(h.callbackUrl, wallReplyNew({ groupId: h.groupId, postId: 81, commentId: 9301, fromId: 336, text: "вопрос", secret: VK_SECRET }));
        await postCallback(h.callbackUrl, messageNew({ groupId: h.groupId, peerId: 336, id: 5, text: "вопрос в личку", secret: VK_SECRET }));
        await eventually(() => h.vk.sent.length === 1, 5000, "message answer");
        await h.pipeline.onIdle();
        assert.equal(h.vk.comments.length, 0);
        assert.equal((await h.messages()).filter((r) => r.direction === "in").length, 1);
      } finally {
        await h.stop();
      }
    });

    test("VK error 901 marks the message failed with the reason and refunds; no retry", async () => {
      const h = await VkHarness.start({ dialect });
      try {
        h.vk.failNext("messages.send", 901, "Can't send messages for users without permission");
        await postCallback(h.callbackUrl, messageNew({ groupId: h.groupId, peerId: 701, id: 1, text: "привет", secret: VK_SECRET }));
        await eventually(async () => (await h.messages())[0]?.status === "failed", 5000, "failed status");
        await h.pipeline.onIdle();
        const [row] = await h.messages();
        assert.match(row!.error!, /901/);
        assert.match(row!.error!, /without permission/);
        assert.equal(h.vk.callsOf("messages.send").length, 1);
        assert.equal(h.vk.sent.length, 0);
        assert.equal(await h.balance(), 50000);
        assert.equal(await h.store.balance.ledgerSum("default"), 50000);
      } finally {
        await h.stop();
      }
    });

    test("VK errors 6, 9 and 10 are retried and the answer goes out once", async () => {
      const h = await VkHarness.start({ dialect });
      try {
        h.vk.failNext("messages.send", 9, "Flood control");
        h.vk.failNext("messages.send", 10, "Internal server error");
        h.vk.failNext("wall.createComment", 6, "Too many requests per second");
        await postCallback(h.callbackUrl, messageNew({ groupId: h.groupId, peerId: 702, id: 1, text: "привет", secret: VK_SECRET }));
        await postCallback(h.callbackUrl, wallReplyNew({ groupId: h.groupId, postId: 82, commentId: 9401, fromId: 337, text: "вопрос", secret: VK_SECRET }));
        await eventually(() => h.vk.sent.length === 1 && h.vk.comments.length === 1, 10_000, "answers after retries");
        await h.pipeline.onIdle();
        assert.equal(h.vk.callsOf("messages.send").length, 3);
        assert.equal(h.vk.callsOf("wall.createComment").length, 2);
        assert.deepEqual(
          (await h.messages()).filter((r) => r.direction === "in").map((r) => r.status),
          ["answered", "answered"],
        );
      } finally {
        await h.stop();
      }
    });

    test("malformed JSON gets 400 and the endpoint keeps serving; unknown event types get ok", async () => {
      const h = await VkHarness.start({ dialect });
      try {
        const bad = await postCallback(h.callbackUrl, '{"type": "message_new", "object": {');
        assert.equal(bad.status, 400);
        const notEvent = await postCallback(h.callbackUrl, "[1,2,3]");
        assert.equal(notEvent.status, 400);
        const unknown = await postCallback(h.callbackUrl, {
          type: "group_join",
          object: { user_id: 1, join_type: "join" },
          group_id: h.groupId,
          event_id: "e".repeat(40),
          v: "5.199",
          secret: VK_SECRET,
        });
        assert.deepEqual(unknown, { status: 200, text: "ok" });
        await postCallback(h.callbackUrl, messageNew({ groupId: h.groupId, peerId: 703, id: 1, text: "still there?", secret: VK_SECRET }));
        await eventually(() => h.vk.sent.length === 1, 5000, "answer after malformed input");
        assert.equal(h.vk.sent[0]!.params.message, "echo: still there?");
      } finally {
        await h.stop();
      }
    });

    test("an event without group_id or for another community gets 403, even with the right secret: nothing recorded, answered or charged", async () => {
      const h = await VkHarness.start({ dialect });
      try {
        const forged = messageNew({ groupId: h.groupId, peerId: 511, id: 21, text: "forged", secret: VK_SECRET }) as Record<string, unknown>;
        delete forged.group_id;
        assert.equal((await postCallback(h.callbackUrl, forged)).status, 403);
        assert.equal(
          (await postCallback(h.callbackUrl, messageNew({ groupId: h.groupId + 1, peerId: 511, id: 22, text: "other club", secret: VK_SECRET }))).status,
          403,
        );
        // The real one still gets through: the test's end mark.
        assert.equal((await postCallback(h.callbackUrl, messageNew({ groupId: h.groupId, peerId: 512, id: 23, text: "real", secret: VK_SECRET }))).status, 200);
        await eventually(() => h.vk.sent.length === 1, 5000, "the real message answered");
        await h.pipeline.onIdle();
        assert.deepEqual(
          h.vk.sent.map((c) => c.params.peer_id),
          ["512"],
        );
        assert.deepEqual(
          (await h.messages()).filter((m) => m.direction === "in").map((m) => m.text),
          ["real"],
        );
      } finally {
        await h.stop();
      }
    });

    test("a refused token stops the start with VK_AUTH", async () => {
      await assert.rejects(
        VkHarness.start({ dialect, botToken: "vk1.a.revoked-token" }),
        (e: unknown) => e instanceof ChannelError && e.code === "VK_AUTH" && e.status === 5,
      );
    });
  });

  describe(`VK channel, Bots Long Poll (${dialect})`, () => {
    test("a long poll event for another community or without group_id is logged and skipped", async () => {
      const h = await VkHarness.start({ dialect, mode: "longpoll" });
      try {
        const bare = messageNew({ groupId: h.groupId, peerId: 811, id: 31, text: "no group" }) as Record<string, unknown>;
        delete bare.group_id;
        h.vk.pushLongPoll(bare as never);
        h.vk.pushLongPoll(messageNew({ groupId: h.groupId + 1, peerId: 811, id: 32, text: "other club" }));
        h.vk.pushLongPoll(messageNew({ groupId: h.groupId, peerId: 812, id: 33, text: "ours" }));
        await eventually(() => h.vk.sent.length === 1, 5000, "our message answered");
        await h.pipeline.onIdle();
        assert.deepEqual(
          h.vk.sent.map((c) => c.params.peer_id),
          ["812"],
        );
        assert.deepEqual(
          (await h.messages()).filter((m) => m.direction === "in").map((m) => m.text),
          ["ours"],
        );
      } finally {
        await h.stop();
      }
    });
    test("long poll mode answers a message and a comment", async () => {
      const h = await VkHarness.start({ dialect, mode: "longpoll" });
      try {
        assert.equal(h.vk.callsOf("groups.getLongPollServer")[0]!.params.group_id, String(h.groupId));
        h.vk.pushLongPoll(messageNew({ groupId: h.groupId, peerId: 801, id: 3, text: "через long poll" }));
        await eventually(() => h.vk.sent.length === 1, 5000, "long poll answer");
        assert.equal(h.vk.sent[0]!.params.peer_id, "801");
        assert.equal(h.vk.sent[0]!.params.message, "echo: через long poll");
        h.vk.pushLongPoll(wallPostNew({ groupId: h.groupId, postId: 90, date: Math.floor(Date.now() / 1000), text: "Пост для long poll" }));
        h.vk.pushLongPoll(wallReplyNew({ groupId: h.groupId, postId: 90, commentId: 9501, fromId: 802, text: "комментарий" }));
        await eventually(() => h.vk.comments.length === 1, 5000, "long poll comment answer");
        assert.equal(h.vk.comments[0]!.params.reply_to_comment, "9501");
        assert.match(String(h.llm.requests.find((r) => lastUserText(r) === "комментарий")!.messages[0]!.content), /Пост для long poll/);
      } finally {
        await h.stop();
      }
    });
  });
}
