import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, test } from "node:test";
import type { Pipeline, PipelineDeps } from "../../src/core/pipeline.js";
import { dialects } from "../support/db.js";
import { eventually, Harness, privateText } from "../support/harness.js";

/** The harness bot's pipeline, sending into `sent` as `chat_id: text`. */
const pipelineOf = (h: Harness, sent: string[], deps: Partial<PipelineDeps>): Pipeline => h.pipelineTo((chat, text) => sent.push(`${chat}: ${text}`), deps);

/** A private Telegram text message `m<i>` of chat `chat`, the `i`-th of its thread. */
const msg = (chat: number, i: number) => privateText(chat, i, `m${i}`);

for (const dialect of dialects()) {
  describe(`scale-out catch-up: a thread recorded on two instances is answered in arrival order (${dialect})`, () => {
    test("an earlier message recorded by another instance is answered before the owner's new one, once each, charged once each", async () => {
      const h = await Harness.start({ dialect, start: false });
      try {
        const sent: string[] = [];
        const elsewhere = pipelineOf(h, [], { recordOnly: true });
        const owner = pipelineOf(h, sent, { catchUp: () => true });
        const before = await h.balance();
        assert.equal((await elsewhere.submit(msg(601, 1))).status, "queued");
        assert.equal((await owner.submit(msg(601, 2))).status, "queued");
        await owner.onIdle();
        assert.deepEqual(sent, ["601: echo: m1", "601: echo: m2"]);
        const rows = await h.messages();
        assert.deepEqual(
          rows.filter((r) => r.direction === "in").map((r) => [r.text, r.status]),
          [
            ["m1", "answered"],
            ["m2", "answered"],
          ],
        );
        assert.equal(await h.balance(), before - 2 * 500);
        // Another new message finds nothing left to catch up: nothing is answered twice.
        await owner.submit(msg(601, 3));
        await owner.onIdle();
        assert.deepEqual(sent, ["601: echo: m1", "601: echo: m2", "601: echo: m3"]);
      } finally {
        await h.stop();
      }
    });

    test("a duplicate recorded by another instance and still unanswered is answered before what follows it", async () => {
      const h = await Harness.start({ dialect, start: false });
      try {
        const sent: string[] = [];
        const elsewhere = pipelineOf(h, [], { recordOnly: true });
        const owner = pipelineOf(h, sent, { catchUp: () => true });
        await elsewhere.submit(msg(602, 1));
        // The owner polls the same update again (its offset was never confirmed) and then the next one.
        assert.equal((await owner.submit(msg(602, 1))).status, "duplicate");
        await owner.submit(msg(602, 2));
        await owner.onIdle();
        assert.deepEqual(sent, ["602: echo: m1", "602: echo: m2"]);
      } finally {
        await h.stop();
      }
    });

    test("without catch-up (one instance alone) the owner answers only its own message; the other stays received for the inbox sweep", async () => {
      const h = await Harness.start({ dialect, start: false });
      try {
        const sent: string[] = [];
        const elsewhere = pipelineOf(h, [], { recordOnly: true });
        const owner = pipelineOf(h, sent, { catchUp: () => false });
        await elsewhere.submit(msg(603, 1));
        await owner.submit(msg(603, 2));
        await owner.onIdle();
        assert.deepEqual(sent, ["603: echo: m2"]);
        const rows = await h.messages();
        assert.deepEqual(
          rows.filter((r) => r.direction === "in").map((r) => [r.text, r.status]),
          [
            ["m1", "received"],
            ["m2", "answered"],
          ],
        );
      } finally {
        await h.stop();
      }
    });
    test("a stale lease holds the send until a heartbeat lands; a stop meanwhile leaves the message received and its reservation refunded", async () => {
      const h = await Harness.start({ dialect, start: false });
      try {
        const sent: string[] = [];
        let fresh = false;
        const owner = pipelineOf(h, sent, { leaseFresh: () => fresh });
        const before = await h.balance();
        await owner.submit(msg(604, 1));
        await eventually(() => h.llm.requests.length === 1, 5000, "the model answered");
        await sleep(300);
        assert.deepEqual(sent, [], "not sent while the lease is stale");
        assert.equal((await h.messages()).find((r) => r.text === "m1")!.status, "received", "not claimed for delivery either");
        fresh = true;
        await owner.onIdle();
        assert.deepEqual(sent, ["604: echo: m1"]);
        fresh = false;
        await owner.submit(msg(604, 2));
        await eventually(() => h.llm.requests.length === 2, 5000, "the model answered again");
        assert.equal(await owner.drain(100), 1, "one answer did not finish");
        assert.deepEqual(sent, ["604: echo: m1"], "the stop sent nothing more");
        assert.deepEqual(
          (await h.messages()).filter((r) => r.direction === "in").map((r) => [r.text, r.status]),
          [
            ["m1", "answered"],
            ["m2", "received"],
          ],
        );
        assert.equal(await h.balance(), before - 500, "only the sent answer is charged");
        assert.equal(await h.store.balance.ledgerSum("default"), await h.balance());
      } finally {
        await h.stop();
      }
    });
  });
}
