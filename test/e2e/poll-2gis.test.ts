import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ensureBuilt } from "../support/cli.js";
import { before, describe, test } from "node:test";
import { dialects } from "../support/db.js";
import { eventually } from "../support/harness.js";
import { answerCounts, TwoGisSetup } from "../support/twogis.js";
import { pollLeaseName } from "../../src/poll-2gis.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const BIN = path.join(ROOT, "bin/bots.js");
const BRANCH = "70000001000000001";

/** A `bots` process started through the real launcher (bin/bots.js → dist/). */
interface Proc {
  pid: number;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
  kill(signal: NodeJS.Signals): void;
}

function bots(s: TwoGisSetup, args: string[]): Proc {
  const child = spawn(process.execPath, [BIN, ...s.globalArgs, ...args], {
    cwd: s.fixture.root,
    env: { PATH: process.env.PATH ?? "" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  return {
    pid: child.pid!,
    done: new Promise((resolve) => child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }))),
    kill: (signal) => child.kill(signal),
  };
}

before(async () => {
  // The launcher runs the bundled CLI: build it from the current sources if stale.
  await ensureBuilt();
});

for (const dialect of dialects()) {
  describe(`bots poll 2gis through bin/bots.js (${dialect})`, () => {
    test("five runs started at once answer every review exactly once", async () => {
      const s = await TwoGisSetup.start({ dialect });
      try {
        s.llm.latencyMs = 100;
        for (let i = 0; i < 12; i++) s.dgis.addReview(BRANCH, { text: `отзыв ${i}`, rating: 1 + (i % 5) });
        const runs = await Promise.all(Array.from({ length: 5 }, () => bots(s, ["poll", "2gis"]).done));
        let answered = 0;
        for (const r of runs) {
          assert.equal(r.code, 0, r.stderr);
          const m = /^shop-2gis: (\d+) answered, 0 skipped, 0 failed$/.exec(r.stdout.trim());
          if (m) answered += Number(m[1]);
          else assert.equal(r.stdout, "", "a run that answered nothing prints nothing on stdout");
          assert.ok(r.stderr === "" || /^shop-2gis: another poll is running \(lease held by [^)]+\); skipped this time\n$/.test(r.stderr), r.stderr);
        }
        assert.equal(answered, 12);
        assert.deepEqual([...answerCounts(s.dgis).values()], Array(12).fill(1));
        const rows = await s.incoming();
        assert.equal(rows.length, 12);
        assert.ok(rows.every((r) => r.status === "answered"));
        assert.equal(s.llm.requests.length, 12, "no review went to the model twice");
        assert.equal(await s.balance(), 50000 - 12 * 500);
        assert.equal(await s.store.balance.ledgerSum("default"), await s.balance());
      } finally {
        await s.stop();
      }
    });

    test("a run killed with SIGKILL mid-way: the next run answers the rest, none twice, charged once", async () => {
      const s = await TwoGisSetup.start({ dialect, concurrency: 2 });
      try {
        s.llm.latencyMs = 400;
        for (let i = 0; i < 10; i++) s.dgis.addReview(BRANCH, { text: `review ${i}` });
        const p = bots(s, ["poll", "2gis", "--lease-ttl", "2"]);
        const reserved = async () => (await s.store.database.db.selectFrom("balance_ledger").select("id").where("reason", "=", "reserve").execute()).length;
        // Kill while answers are in flight: some posted, and more reserved than posted.
        await eventually(async () => s.dgis.answers.length >= 2 && (await reserved()) > s.dgis.answers.length, 30_000, "answers posted and more in flight");
        p.kill("SIGKILL");
        const killed = await p.done;
        assert.equal(killed.signal, "SIGKILL");
        const before = s.dgis.answers.length;
        assert.ok(before < 10, `killed mid-way (${before} answered)`);
        const left = await s.incoming();
        assert.ok(
          left.some((r) => r.status === "received"),
          "answers were in flight when it was killed",
        );
        assert.ok((await reserved()) > before, "and their cost was reserved");
        const lease = await s.store.leases.get(pollLeaseName("shop-2gis"));
        assert.ok(lease, "the killed run's lease is left behind");
        await eventually(async () => ((await s.store.leases.get(pollLeaseName("shop-2gis")))?.expires_ms ?? 0) < Date.now(), 10_000, "the lease to expire");

        s.llm.latencyMs = 0;
        const next = await bots(s, ["poll", "2gis"]).done;
        assert.equal(next.code, 0, next.stderr);
        assert.equal(next.stdout.trim(), `shop-2gis: ${10 - before} answered, 0 skipped, 0 failed`);
        assert.deepEqual([...answerCounts(s.dgis).values()], Array(10).fill(1));
        const rows = await s.incoming();
        assert.equal(rows.length, 10);
        // A kill between 2GIS taking an answer and the database recording it left that row
        // `delivering`; the next pass's recovery asked 2GIS and recorded it as answered.
        for (const r of rows) assert.equal(r.status, "answered", `${r.channel_message_id}: ${r.status}`);
        assert.equal(await s.balance(), 50000 - 10 * 500, "reservations left by the killed run were refunded");
        assert.equal(await s.store.balance.ledgerSum("default"), await s.balance());
        assert.deepEqual(await bots(s, ["poll", "2gis"]).done.then((r) => [r.code, r.stdout, r.stderr]), [0, "", ""]);
      } finally {
        await s.stop();
      }
    });

    test("rows left delivering are resolved by asking 2GIS: a comment there is recorded, a missing one is posted once; replay --send asks too", async () => {
      const s = await TwoGisSetup.start({ dialect });
      try {
        const there = s.dgis.addReview(BRANCH, { text: "landed" });
        const missing = s.dgis.addReview(BRANCH, { text: "lost" });
        const failed = s.dgis.addReview(BRANCH, { text: "ambiguous" });
        // What a killed pass leaves: recorded, reserved, claimed; one answer reached 2GIS.
        const seed = async (id: string, text: string, status: "delivering" | "failed") => {
          const msgId = (await s.store.messages.insertIncoming({
            bot: "shop-2gis",
            channel: "2gis",
            thread_key: `2gis:review:${id}`,
            chat_id: id,
            user_id: null,
            user_name: "A",
            text,
            dedupe_key: `2gis:review:${id}`,
            channel_message_id: id,
            meta: { kind: "reviews", target: { review_id: id, branch_id: BRANCH } },
            status: "received",
            created_ms: Date.now() - 3 * 86_400_000,
          }))!;
          const r = (await s.store.balance.reserve("default", 500, 0, msgId))!;
          if (status === "failed") await s.store.balance.refund(r, "ambiguous 500");
          await s.store.messages.setStatus(msgId, status);
          return msgId;
        };
        const thereId = await seed(there.id, there.text, "delivering");
        const missingId = await seed(missing.id, missing.text, "delivering");
        const failedId = await seed(failed.id, failed.text, "failed");
        there.comments.push({ id: "c-old", text: "Спасибо за отзыв!", isOfficialAnswer: true, catalog: "2gis" });
        failed.comments.push({ id: "c-amb", text: "Ответ, который дошёл", isOfficialAnswer: true, catalog: "2gis" });

        const run = await bots(s, ["poll", "2gis"]).done;
        assert.equal(run.code, 0, run.stderr);
        assert.equal((await s.store.messages.get(thereId))!.status, "answered");
        assert.equal((await s.store.messages.answerTo(thereId))!.text, "Спасибо за отзыв!", "the comment found on 2GIS is stored");
        assert.equal(s.dgis.answersTo(there.id).length, 0, "not posted again");
        assert.equal((await s.store.messages.get(missingId))!.status, "answered");
        assert.equal(s.dgis.answersTo(missing.id).length, 1, "posted once");
        assert.equal(s.llm.requests.length, 1, "only the missing one went to the model");

        // A `failed` review whose answer landed after all: replay --send records it, posts nothing.
        const replay = await bots(s, ["replay", "--send", "--id", String(failedId)]).done;
        assert.equal(replay.code, 0, replay.stderr);
        assert.equal((await s.store.messages.get(failedId))!.status, "answered");
        assert.equal(s.dgis.answersTo(failed.id).length, 0, "replay did not post a second answer");
        assert.equal((await s.store.messages.answerTo(failedId))!.text, "Ответ, который дошёл");
        // Charged once per answer that exists: the landed one (kept), the posted one, the replayed one.
        assert.equal(await s.balance(), 50000 - 3 * 500);
        assert.equal(await s.store.balance.ledgerSum("default"), await s.balance());
      } finally {
        await s.stop();
      }
    });
  });
}
