import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { longPollCursorName } from "../../src/channels/vk/worker.js";
import type { Store } from "../../src/storage/index.js";
import { dialects } from "../support/db.js";
import { eventually } from "../support/harness.js";
import { VK_SECRET, VkHarness } from "../support/vk-harness.js";
import { messageNew, postCallback } from "../support/vk-server.js";

/** A store whose recording of the message with `text` waits until `open()` is called. */
function gatedStore(store: Store, text: string) {
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  let reached = false;
  const messages = new Proxy(store.messages, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (prop !== "insertIncoming") return typeof v === "function" ? v.bind(target) : v;
      return async (row: { text: string }) => {
        if (row.text === text) {
          reached = true;
          await gate;
        }
        return (v as (r: unknown) => Promise<unknown>).call(target, row);
      };
    },
  });
  return { store: { ...store, messages } as Store, open: () => open(), reached: () => reached };
}

const incoming = async (h: VkHarness) => (await h.messages()).filter((r) => r.direction === "in");

for (const dialect of dialects()) {
  describe(`VK long poll durability (${dialect})`, () => {
    test("a stop in the middle of a batch loses no event: the next start records and answers each once", async () => {
      const h = await VkHarness.start({ dialect, mode: "longpoll" });
      try {
        await h.stopBots();
        const gated = gatedStore(h.store, "два");
        await h.startBots(gated.store);
        const startTs = h.vk.longPollTs;
        h.vk.pushLongPoll(...["один", "два", "три", "четыре"].map((text, i) => messageNew({ groupId: h.groupId, peerId: 900 + i, id: 1, text })));
        await eventually(() => gated.reached(), 5000, "the second event's recording started");
        const stopping = h.stopBots();
        await new Promise((r) => setTimeout(r, 200));
        gated.open();
        await stopping;
        assert.deepEqual(
          (await incoming(h)).map((r) => r.text),
          ["один", "два"],
          "the loop stopped after the event being recorded",
        );
        assert.equal(await h.store.cursors.get("club-vk", longPollCursorName(h.groupId)), String(startTs), "ts not advanced past the unfinished batch");
        await h.startBots();
        await eventually(async () => (await incoming(h)).filter((r) => r.status === "answered").length === 4, 10_000, "all four answered");
        await h.pipeline.onIdle();
        const rows = await incoming(h);
        assert.deepEqual(rows.map((r) => r.text).sort(), ["два", "один", "три", "четыре"].sort());
        assert.equal(h.vk.callsOf("messages.send").length, 4, "each answered once");
        assert.equal(h.llm.requests.length, 4);
        assert.equal(await h.store.cursors.get("club-vk", longPollCursorName(h.groupId)), String(h.vk.longPollTs));
      } finally {
        await h.stop();
      }
    });

    test("a restart continues from the stored ts: events sent while stopped are received", async () => {
      const h = await VkHarness.start({ dialect, mode: "longpoll" });
      try {
        h.vk.pushLongPoll(messageNew({ groupId: h.groupId, peerId: 911, id: 1, text: "до остановки" }));
        await eventually(() => h.vk.sent.length === 1, 5000, "first answer");
        await eventually(async () => (await h.store.cursors.get("club-vk", longPollCursorName(h.groupId))) === String(h.vk.longPollTs), 5000, "ts stored");
        await h.stopBots();
        h.vk.pushLongPoll(
          messageNew({ groupId: h.groupId, peerId: 912, id: 1, text: "пока стоял" }),
          messageNew({ groupId: h.groupId, peerId: 913, id: 1, text: "и ещё" }),
        );
        await h.startBots();
        await eventually(() => h.vk.sent.length === 3, 5000, "answers to the events sent while stopped");
        await h.pipeline.onIdle();
        assert.deepEqual(h.vk.sent.map((c) => c.params.peer_id).sort(), ["911", "912", "913"]);
        assert.equal(h.vk.callsOf("messages.send").length, 3);
        assert.equal((await incoming(h)).length, 3);
      } finally {
        await h.stop();
      }
    });

    test("failed 2: a new key and the same ts (nothing missed); failed 3: a new key and VK's ts, with a warning", async () => {
      const h = await VkHarness.start({ dialect, mode: "longpoll" });
      try {
        const servers = () => h.vk.callsOf("groups.getLongPollServer").length;
        const before = servers();
        // The key expires and an event arrives: a client taking the new server's ts would miss it.
        h.vk.expireLongPollKey(2);
        h.vk.pushLongPoll(messageNew({ groupId: h.groupId, peerId: 921, id: 1, text: "после failed 2" }));
        await eventually(() => h.vk.sent.length === 1, 5000, "event after failed 2");
        assert.equal(servers(), before + 1, "a new key was asked for");
        h.vk.expireLongPollKey(3);
        h.vk.pushLongPoll(messageNew({ groupId: h.groupId, peerId: 922, id: 1, text: "потеряно VK" }));
        await eventually(() => servers() === before + 2, 5000, "a new key after failed 3");
        h.vk.pushLongPoll(messageNew({ groupId: h.groupId, peerId: 923, id: 1, text: "после failed 3" }));
        await eventually(() => h.vk.sent.length === 2, 5000, "event after failed 3");
        await h.pipeline.onIdle();
        assert.deepEqual(
          h.vk.sent.map((c) => c.params.peer_id),
          ["921", "923"],
          "after failed 3 the client continues from VK's new ts",
        );
        assert.ok((await h.logLines()).some((l) => l.level === "warn" && /lost its information/.test(String(l.msg))));
      } finally {
        await h.stop();
      }
    });

    test("failed 1: a stored ts older than VK's history continues from VK's ts and warns that events were lost", async () => {
      const h = await VkHarness.start({ dialect, mode: "longpoll" });
      try {
        await h.stopBots();
        const stored = await h.store.cursors.get("club-vk", longPollCursorName(h.groupId));
        assert.equal(stored, String(h.vk.longPollTs), "the first start stored VK's ts");
        await h.store.cursors.set("club-vk", longPollCursorName(h.groupId), String(h.vk.longPollTs));
        h.vk.pushLongPoll(messageNew({ groupId: h.groupId, peerId: 931, id: 1, text: "забыто" }));
        h.vk.forgetLongPollHistory();
        await h.startBots();
        // VK answers failed 1 with its newest ts: push the next event only once that has happened.
        await eventually(async () => (await h.logLines()).some((l) => /history no longer reaches our ts/.test(String(l.msg))), 5000, "failed 1 seen");
        h.vk.pushLongPoll(messageNew({ groupId: h.groupId, peerId: 932, id: 1, text: "новое" }));
        await eventually(() => h.vk.sent.length === 1, 5000, "answer after failed 1");
        assert.equal(h.vk.sent[0]!.params.peer_id, "932");
        assert.ok((await h.logLines()).some((l) => l.level === "warn" && /history no longer reaches our ts/.test(String(l.msg))));
      } finally {
        await h.stop();
      }
    });

    test("an event that cannot be recorded is retried, not skipped: the ts waits for it", async () => {
      const h = await VkHarness.start({ dialect, mode: "longpoll" });
      try {
        await h.stopBots();
        const failing = new Proxy(h.store.messages, {
          get(target, prop, receiver) {
            const v = Reflect.get(target, prop, receiver);
            if (prop !== "insertIncoming") return typeof v === "function" ? v.bind(target) : v;
            return async (row: unknown) => {
              if (failures-- > 0) throw new Error("database is down (test)");
              return (v as (r: unknown) => Promise<unknown>).call(target, row);
            };
          },
        });
        let failures = 1000;
        await h.startBots({ ...h.store, messages: failing } as Store);
        const tsBefore = await h.store.cursors.get("club-vk", longPollCursorName(h.groupId));
        h.vk.pushLongPoll(messageNew({ groupId: h.groupId, peerId: 941, id: 1, text: "сквозь сбой" }));
        await eventually(() => h.vk.lpChecks.length > 0 && failures <= 996, 30_000, "several failed attempts");
        assert.equal(await h.store.cursors.get("club-vk", longPollCursorName(h.groupId)), tsBefore, "the ts waits for the event");
        failures = 0;
        await eventually(() => h.vk.sent.length === 1, 10_000, "answered once the database is back");
        assert.equal(h.vk.sent[0]!.params.peer_id, "941");
      } finally {
        await h.stop();
      }
    });
  });

  describe(`VK error 6 (${dialect})`, () => {
    test("answered with 6 forever: fails after sendRetries + 1 attempts and is refunded", async () => {
      const h = await VkHarness.start({ dialect, worker: { sendRetries: 2 } });
      try {
        h.vk.failNext("messages.send", 6, "Too many requests per second", 1000);
        await postCallback(h.callbackUrl, messageNew({ groupId: h.groupId, peerId: 951, id: 1, text: "привет", secret: VK_SECRET }));
        await eventually(async () => (await incoming(h))[0]?.status === "failed", 10_000, "failed after bounded retries");
        await h.pipeline.onIdle();
        assert.equal(h.vk.callsOf("messages.send").length, 3);
        assert.match((await incoming(h))[0]!.error!, /VK error 6/);
        assert.equal(await h.balance(), 50000);
      } finally {
        await h.stop();
      }
    });

    test("answered with 6 twice, then ok: the answer goes out on the third attempt", async () => {
      const h = await VkHarness.start({ dialect, worker: { sendRetries: 2 } });
      try {
        h.vk.failNext("messages.send", 6, "Too many requests per second", 2);
        await postCallback(h.callbackUrl, messageNew({ groupId: h.groupId, peerId: 952, id: 1, text: "привет", secret: VK_SECRET }));
        await eventually(() => h.vk.sent.length === 1, 10_000, "answer after two 6s");
        await h.pipeline.onIdle();
        assert.equal(h.vk.callsOf("messages.send").length, 3);
        assert.equal((await incoming(h))[0]!.status, "answered");
      } finally {
        await h.stop();
      }
    });
  });
}
