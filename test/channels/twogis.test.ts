import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { TwoGisWorker } from "../../src/channels/twogis/worker.js";
import { branchCursorName, pollLeaseName } from "../../src/poll-2gis.js";
import { loadBotConfigs } from "../../src/config/load.js";
import { createLogging } from "../../src/logging.js";
import { startBots } from "../../src/runner.js";
import { bin } from "../support/cli.js";
import { dialects } from "../support/db.js";
import { eventually } from "../support/harness.js";
import { lastUserText } from "../support/openai-server.js";
import { answerCounts, OPENAI_KEY, TwoGisSetup } from "../support/twogis.js";

const BRANCH = "70000001000000001";

for (const dialect of dialects()) {
  describe(`2GIS reviews (${dialect})`, () => {
    test("new reviews get one official answer each; the prompt carries rating, text, author and branch; a second poll is quiet", async () => {
      const s = await TwoGisSetup.start({ dialect });
      try {
        const r1 = s.dgis.addReview(BRANCH, { text: "Отличный сервис", rating: 5, userName: "Анна" });
        const r2 = s.dgis.addReview(BRANCH, { text: "Долго ждали заказ", rating: 2, userName: "Иван" });
        const run = await s.cli("poll", "2gis");
        assert.equal(run.code, 0, run.stderr);
        assert.equal(run.stdout.trim(), "shop-2gis: 2 answered, 0 skipped, 0 failed");
        assert.equal(run.stderr, "");
        for (const r of [r1, r2]) {
          const [a, ...more] = s.dgis.answersTo(r.id);
          assert.equal(more.length, 0);
          assert.deepEqual(a!.body, { text: `echo: ${r.text}`, catalog: "2gis", isOfficialAnswer: true });
          assert.match(a!.authorization ?? "", /^Bearer tok-/);
        }
        const sys = s.llm.requests.map((q) => String(q.messages[0]!.content)).sort();
        assert.deepEqual(sys, [
          `You answer reviews for shop-2gis. Rating 2 by Иван on branch ${BRANCH}: Долго ждали заказ`,
          `You answer reviews for shop-2gis. Rating 5 by Анна on branch ${BRANCH}: Отличный сервис`,
        ]);
        const rows = await s.incoming();
        assert.deepEqual(
          rows.map((r) => [r.thread_key, r.status, r.channel, r.user_name]),
          [
            [`2gis:review:${r1.id}`, "answered", "2gis", "Анна"],
            [`2gis:review:${r2.id}`, "answered", "2gis", "Иван"],
          ],
        );
        assert.equal((await s.outgoing()).length, 2);
        assert.equal(await s.balance(), 50000 - 2 * 500);
        assert.equal(await s.store.balance.ledgerSum("default"), await s.balance());
        assert.equal(await s.store.cursors.get("shop-2gis", branchCursorName(BRANCH)), r2.dateCreated);
        assert.equal(await s.store.leases.get(pollLeaseName("shop-2gis")), undefined, "lease released");

        const again = await s.cli("poll", "2gis");
        assert.deepEqual(again, { code: 0, stdout: "", stderr: "" });
        assert.equal(s.dgis.answers.length, 2);
        assert.equal(s.llm.requests.length, 2);
        assert.equal(s.dgis.signIns, 2, "each run signs in once");
        assert.ok(!run.stdout.includes(OPENAI_KEY) && !run.stderr.includes(s.dgis.password));
      } finally {
        await s.stop();
      }
    });

    test("ratings outside answer_ratings and empty texts are skipped and recorded; the cursor moves past them", async () => {
      const s = await TwoGisSetup.start({ dialect, twogis: ["answer_ratings: [1, 2, 3]"] });
      try {
        const low = s.dgis.addReview(BRANCH, { text: "Плохо", rating: 1 });
        const high = s.dgis.addReview(BRANCH, { text: "Супер", rating: 5 });
        const empty = s.dgis.addReview(BRANCH, { text: "", rating: 3 });
        const run = await s.cli("poll", "2gis");
        assert.equal(run.code, 0, run.stderr);
        assert.equal(run.stdout.trim(), "shop-2gis: 1 answered, 2 skipped, 0 failed");
        assert.equal(s.dgis.answersTo(low.id).length, 1);
        assert.equal(s.dgis.answersTo(high.id).length, 0);
        assert.equal(s.dgis.answersTo(empty.id).length, 0);
        const rows = await s.incoming();
        assert.deepEqual(
          rows.map((r) => [r.channel_message_id, r.status, r.error]),
          [
            [low.id, "answered", null],
            [high.id, "skipped", "rating 5 is not in answer_ratings"],
            [empty.id, "skipped", "review has no text (answer_empty: false)"],
          ],
        );
        assert.equal(await s.store.cursors.get("shop-2gis", branchCursorName(BRANCH)), empty.dateCreated);
        const again = await s.cli("poll", "2gis");
        assert.deepEqual(again, { code: 0, stdout: "", stderr: "" });
        assert.equal((await s.incoming()).length, 3);

        // With answer_empty the empty review of a new rating is answered with a marker as user text.
        s.writeConfig({ twogis: ["answer_ratings: [1, 2, 3]", "answer_empty: true"] });
        const empty2 = s.dgis.addReview(BRANCH, { text: "", rating: 2 });
        const third = await s.cli("poll", "2gis");
        assert.equal(third.stdout.trim(), "shop-2gis: 1 answered, 0 skipped, 0 failed");
        assert.equal(s.dgis.answersTo(empty2.id).length, 1);
        assert.equal(lastUserText(s.llm.requests.at(-1)!), "[rating 2/5, no text]");
      } finally {
        await s.stop();
      }
    });

    test("an expired token is replaced by signing in again once", async () => {
      const s = await TwoGisSetup.start({ dialect });
      try {
        s.dgis.addReview(BRANCH, { text: "first" });
        assert.equal((await s.cli("poll", "2gis")).code, 0);
        // A pre-issued token that 2GIS then expires: the client signs in with login/password.
        const token = s.dgis.issueToken();
        s.writeConfig({ twogis: [`token: ${token}`] });
        s.dgis.expireTokens();
        const r = s.dgis.addReview(BRANCH, { text: "second" });
        const before = s.dgis.signIns;
        const seenBefore = s.dgis.requests.length;
        const run = await s.cli("poll", "2gis");
        assert.equal(run.code, 0, run.stderr);
        assert.equal(run.stdout.trim(), "shop-2gis: 1 answered, 0 skipped, 0 failed");
        assert.equal(s.dgis.signIns, before + 1);
        const calls = s.dgis.requests.slice(seenBefore);
        assert.deepEqual(
          calls.slice(0, 3).map((q) => [q.method, q.path.replace(/\d+/, "N"), q.status]),
          [
            ["GET", "/presence/branch/N/reviews", 401],
            ["POST", "/users/auth", 200],
            ["GET", "/presence/branch/N/reviews", 200],
          ],
        );
        assert.equal(calls[0]!.authorization, `Bearer ${token}`);
        assert.notEqual(calls[2]!.authorization, `Bearer ${token}`);
        assert.equal(s.dgis.answersTo(r.id).length, 1);
      } finally {
        await s.stop();
      }
    });

    test("a refused login and a 403 are fatal for the bot: exit 1 with a clear message", async () => {
      const s = await TwoGisSetup.start({ dialect });
      try {
        s.dgis.addReview(BRANCH, { text: "hello" });
        s.dgis.password = "changed-password";
        const run = await s.cli("poll", "2gis");
        assert.equal(run.code, 1);
        assert.match(run.stderr, /shop-2gis: DGIS_AUTH: 2GIS refused the login \(401\) \(check 2gis\.login and 2gis\.password/);
        assert.ok(!run.stderr.includes("2gis-pass-123"));
        s.dgis.password = "2gis-pass-123";
        s.dgis.forbidden = true;
        const forbidden = await s.cli("poll", "2gis");
        assert.equal(forbidden.code, 1);
        assert.match(forbidden.stderr, /shop-2gis: DGIS_AUTH: 2GIS forbids this account to do that \(403\)/);
        assert.equal(s.dgis.answers.length, 0);
        assert.equal((await s.incoming()).length, 0);
      } finally {
        await s.stop();
      }
    });

    test("a 500 on one answer: exit 1 naming it, the others kept, and the next run answers it once", async () => {
      const s = await TwoGisSetup.start({ dialect });
      try {
        const ok1 = s.dgis.addReview(BRANCH, { text: "one" });
        const bad = s.dgis.addReview(BRANCH, { text: "two" });
        const ok3 = s.dgis.addReview(BRANCH, { text: "three" });
        s.dgis.failAnswers.set(bad.id, 1);
        const run = await s.cli("poll", "2gis");
        assert.equal(run.code, 1);
        assert.equal(run.stdout.trim(), "shop-2gis: 2 answered, 0 skipped, 1 failed");
        assert.match(
          run.stderr,
          new RegExp(
            `^shop-2gis: review ${bad.id} \\(branch ${BRANCH}, message \\d+\\): DGIS_HTTP: 2GIS POST /presence/reviews/${bad.id}/comments: HTTP 500 Internal error$`,
            "m",
          ),
        );
        assert.equal(s.dgis.answersTo(ok1.id).length, 1);
        assert.equal(s.dgis.answersTo(ok3.id).length, 1);
        assert.equal(s.dgis.answersTo(bad.id).length, 0);
        // A 500 may hide a stored answer: not repeated within the run; the next run's list decides.
        assert.equal(s.dgis.requests.filter((q) => q.path === `/presence/reviews/${bad.id}/comments`).length, 1);
        const failedRow = (await s.incoming()).find((r) => r.channel_message_id === bad.id)!;
        assert.equal(failedRow.status, "failed");
        assert.equal(await s.balance(), 50000 - 2 * 500, "the failed answer's reservation was refunded");
        // The cursor stays before the failed review so it is listed again.
        assert.equal(await s.store.cursors.get("shop-2gis", branchCursorName(BRANCH)), ok1.dateCreated);

        const next = await s.cli("poll", "2gis");
        assert.equal(next.code, 0, next.stderr);
        assert.equal(next.stdout.trim(), "shop-2gis: 1 answered, 0 skipped, 0 failed");
        assert.deepEqual([...answerCounts(s.dgis).values()], [1, 1, 1]);
        assert.equal((await s.incoming()).length, 3, "the retry reuses the stored message");
        // Past the retried review; the answered ones after it are no longer listed at all.
        assert.equal(await s.store.cursors.get("shop-2gis", branchCursorName(BRANCH)), bad.dateCreated);
        assert.equal(await s.store.balance.ledgerSum("default"), await s.balance());
      } finally {
        await s.stop();
      }
    });

    test("an answer refused with 503 or 429 is repeated at once; an answer that landed despite a 500 is not posted again", async () => {
      const s = await TwoGisSetup.start({ dialect });
      try {
        const a = s.dgis.addReview(BRANCH, { text: "gateway" });
        s.dgis.failAnswers.set(a.id, 1);
        s.dgis.failStatus = 503;
        const run = await s.cli("poll", "2gis");
        assert.equal(run.code, 0, run.stderr);
        assert.equal(s.dgis.answersTo(a.id).length, 1);
        assert.deepEqual(
          s.dgis.requests.filter((q) => q.method === "POST" && q.path.includes("/comments")).map((q) => q.status),
          [503, 200],
        );

        // 2GIS stored the answer but said 500: the message fails, and the next run sees the review
        // answered (not listed any more), so it is never posted twice.
        const b = s.dgis.addReview(BRANCH, { text: "stored anyway" });
        s.dgis.failStatus = 500;
        s.dgis.storeThenFail.add(b.id);
        const first = await s.cli("poll", "2gis");
        assert.equal(first.code, 1);
        assert.equal(s.dgis.answersTo(b.id).length, 1);
        const second = await s.cli("poll", "2gis");
        assert.deepEqual(second, { code: 0, stdout: "", stderr: "" });
        assert.equal(s.dgis.answersTo(b.id).length, 1);
      } finally {
        await s.stop();
      }
    });

    test("429 with Retry-After is waited out, then the pass goes on", async () => {
      const s = await TwoGisSetup.start({ dialect });
      try {
        const r = s.dgis.addReview(BRANCH, { text: "rate me" });
        s.dgis.rateLimit = { count: 1, retryAfterS: 1 };
        const run = await s.cli("poll", "2gis");
        assert.equal(run.code, 0, run.stderr);
        assert.equal(s.dgis.answersTo(r.id).length, 1);
        const lists = s.dgis.requests.filter((q) => q.path.endsWith("/reviews"));
        assert.deepEqual(
          lists.slice(0, 2).map((q) => q.status),
          [429, 200],
        );
        assert.ok(lists[1]!.at - lists[0]!.at >= 900, "waited for Retry-After");
      } finally {
        await s.stop();
      }
    });

    test("zero balance: nothing answered, exit 1 with a clear message; after a top-up the next run answers", async () => {
      const s = await TwoGisSetup.start({ dialect, balance: 0 });
      try {
        s.dgis.addReview(BRANCH, { text: "a" });
        s.dgis.addReview(BRANCH, { text: "b" });
        const run = await s.cli("poll", "2gis");
        assert.equal(run.code, 1);
        assert.equal(run.stdout.trim(), "shop-2gis: 0 answered, 0 skipped, 2 failed");
        assert.match(
          run.stderr,
          /^shop-2gis: nothing answered: the balance cannot pay for 2 answers \(account default cannot pay 5\); they are answered on the next run after a top-up: bots balance add AMOUNT$/m,
        );
        assert.equal(s.dgis.answers.length, 0);
        assert.equal(s.llm.requests.length, 0);
        assert.deepEqual(
          (await s.incoming()).map((r) => r.status),
          ["no_balance", "no_balance"],
        );
        assert.equal(await s.store.cursors.get("shop-2gis", branchCursorName(BRANCH)), undefined);

        await s.store.balance.topUp("default", 1000);
        const next = await s.cli("poll", "2gis");
        assert.equal(next.code, 0, next.stderr);
        assert.equal(next.stdout.trim(), "shop-2gis: 2 answered, 0 skipped, 0 failed");
        assert.deepEqual([...answerCounts(s.dgis).values()], [1, 1]);
        assert.equal(await s.balance(), 0);
      } finally {
        await s.stop();
      }
    });

    test("a held lease makes a run exit 0 with one notice; an expired one is taken over", async () => {
      const s = await TwoGisSetup.start({ dialect });
      try {
        const r = s.dgis.addReview(BRANCH, { text: "lease" });
        assert.ok(await s.store.leases.acquire(pollLeaseName("shop-2gis"), "other-host:42:abc", 60_000));
        const busy = await s.cli("poll", "2gis");
        assert.equal(busy.code, 0);
        assert.equal(busy.stdout, "");
        assert.match(
          busy.stderr,
          /^shop-2gis: another poll is running \(lease held by other-host:42:abc until \d{4}-\d\d-\d\d \d\d:\d\d [+-]\d\d:\d\d\); skipped this time\n$/,
        );
        assert.equal(s.dgis.requests.length, 0);
        // A killed holder stops renewing; once expired the next run takes over.
        await s.store.database.db
          .updateTable("leases")
          .set({ expires_ms: Date.now() - 1 })
          .execute();
        const run = await s.cli("poll", "2gis");
        assert.equal(run.code, 0, run.stderr);
        assert.equal(s.dgis.answersTo(r.id).length, 1);
      } finally {
        await s.stop();
      }
    });

    test("paginated lists, several branches, max_per_run and since", async () => {
      const B2 = "70000001000000002";
      const s = await TwoGisSetup.start({ dialect, branches: [BRANCH, B2], twogis: ["max_per_run: 40", "since: 2025-01-01T00:00:05Z"] });
      try {
        s.dgis.maxPageSize = 7;
        const all = [];
        for (let i = 0; i < 30; i++) all.push(s.dgis.addReview(i % 2 ? B2 : BRANCH, { text: `review ${i}` }));
        // Created before `since` (00:00:01 … 00:00:04): ignored.
        const old = all.filter((r) => Date.parse(r.dateCreated) < Date.parse("2025-01-01T00:00:05Z"));
        assert.equal(old.length, 4);
        s.writeConfig({ branches: [BRANCH, B2], twogis: ["max_per_run: 10", "since: 2025-01-01T00:00:05Z"] });
        const run = await s.cli("poll", "2gis");
        assert.equal(run.code, 0, run.stderr);
        assert.equal(run.stdout.trim(), "shop-2gis: 10 answered, 0 skipped, 0 failed, 16 left for the next run");
        const run2 = await s.cli("poll", "2gis");
        assert.equal(run2.stdout.trim(), "shop-2gis: 10 answered, 0 skipped, 0 failed, 6 left for the next run");
        const run3 = await s.cli("poll", "2gis");
        assert.equal(run3.stdout.trim(), "shop-2gis: 6 answered, 0 skipped, 0 failed");
        const counts = answerCounts(s.dgis);
        for (const r of all) assert.equal(counts.get(r.id), old.includes(r) ? 0 : 1, `review ${r.id}`);
        assert.ok(
          s.dgis.requests.some((q) => q.query.offsetDate),
          "paged with offsetDate",
        );
        assert.ok(s.dgis.requests.every((q) => q.path === "/users/auth" || q.query.withoutAnswer === "true" || q.method === "POST"));
        assert.deepEqual(await s.cli("poll", "2gis"), { code: 0, stdout: "", stderr: "" });
      } finally {
        await s.stop();
      }
    });

    test("malformed review items are logged and skipped; the others are answered", async () => {
      const s = await TwoGisSetup.start({ dialect });
      try {
        s.dgis.junkItems.push(
          null,
          { id: "x1" },
          { id: "x2", rating: "five", dateCreated: "2025-01-01T00:00:00Z" },
          { id: "x3", rating: 4, dateCreated: "not a date" },
        );
        const r = s.dgis.addReview(BRANCH, { text: "fine", userName: null });
        const run = await s.cli("poll", "2gis");
        assert.equal(run.code, 0, run.stderr);
        assert.equal(run.stdout.trim(), "shop-2gis: 1 answered, 0 skipped, 0 failed");
        assert.equal(s.dgis.answersTo(r.id).length, 1);
        assert.equal((await s.incoming())[0]!.user_name, null);
        const { readFileSync } = await import("node:fs");
        assert.match(readFileSync(`${s.fixture.logDir}/shop-2gis.log`, "utf8"), /2GIS review item not understood; skipped/);
      } finally {
        await s.stop();
      }
    });

    test("a real bin/bots.js poll: its log lines are in the files when it has exited", async () => {
      const s = await TwoGisSetup.start({ dialect });
      try {
        s.dgis.junkItems.push(null, { id: "x1" });
        const reviews = Array.from({ length: 12 }, (_, i) => s.dgis.addReview(BRANCH, { text: `review ${i}`, userName: `User ${i}` }));
        const run = await bin([...s.globalArgs, "poll", "2gis"]);
        assert.equal(run.code, 0, run.stderr);
        assert.equal(run.stdout.trim(), "shop-2gis: 12 answered, 0 skipped, 0 failed");
        // Read at once after the exit: nothing may still be on its way to the files.
        const { readFileSync } = await import("node:fs");
        const lines = (file: string) =>
          readFileSync(`${s.fixture.logDir}/${file}`, "utf8")
            .trim()
            .split("\n")
            .map((l) => JSON.parse(l) as { msg: string; msg_id?: number });
        assert.ok(lines("shop-2gis.log").some((l) => l.msg === "2GIS review item not understood; skipped"));
        const answered = new Set((await s.incoming()).map((m) => Number(m.id)));
        assert.equal(answered.size, reviews.length);
        // Every answer's line and the pass's closing line, in the bot's file and the process's.
        for (const file of ["shop-2gis.log", "bots.log"]) {
          const all = lines(file);
          assert.equal(all.filter((l) => l.msg === "answer delivered").length, answered.size, file);
          assert.deepEqual(
            all.filter((l) => l.msg === "2GIS pass done").map((l) => (l as { answered?: number }).answered),
            [12],
            file,
          );
        }
      } finally {
        await s.stop();
      }
    });

    test("usage errors exit 2", async () => {
      const s = await TwoGisSetup.start({ dialect });
      try {
        const vk = await s.cli("poll", "vk");
        assert.equal(vk.code, 2);
        assert.match(vk.stderr, /only 2gis is polled/);
        const unknown = await s.cli("poll", "2gis", "nope");
        assert.equal(unknown.code, 2);
        assert.match(unknown.stderr, /'nope' is neither a bot nor a channel/);
        s.fixture.bot(
          "broken",
          'name: broken\nchannel: 2gis\nprompt: prompts/review.md\nllm: {model: m, api_key: k}\n2gis: {branch_ids: ["1"], answer_rating: [1]}\n',
        );
        const bad = await s.cli("poll", "2gis");
        assert.equal(bad.code, 2);
        assert.match(bad.stderr, /broken\.yaml:\d+: 2gis\.answer_rating: unknown key \(did you mean 'answer_ratings'\?\)/);
      } finally {
        await s.stop();
      }
    });

    test("bots start 2gis polls every interval inside the long-running process", async () => {
      const s = await TwoGisSetup.start({ dialect });
      const logging = createLogging({ logDir: s.fixture.logDir, console: false, level: "debug" });
      try {
        const { bots, problems } = loadBotConfigs(s.fixture.configDir, {
          OPENAI_API_KEY: OPENAI_KEY,
          DGIS_LOGIN: s.dgis.login,
          DGIS_PASSWORD: s.dgis.password,
        });
        assert.deepEqual(problems, []);
        const first = s.dgis.addReview(BRANCH, { text: "before start" });
        const running = await startBots({
          bots,
          store: s.store,
          logging,
          createWorker: (bot, logger, deps) => TwoGisWorker.create(bot, logger, { store: deps.store, intervalMs: 50, backoffMs: 20 }),
        });
        try {
          await eventually(() => s.dgis.answersTo(first.id).length === 1, 10_000, "first review answered");
          const later = s.dgis.addReview(BRANCH, { text: "while running" });
          await eventually(() => s.dgis.answersTo(later.id).length === 1, 10_000, "a later review answered on a later pass");
          const passes = s.dgis.requests.filter((q) => q.path.endsWith("/reviews")).length;
          await eventually(() => s.dgis.requests.filter((q) => q.path.endsWith("/reviews")).length >= passes + 2, 10_000, "more passes");
        } finally {
          await running.stop(2000);
        }
        assert.deepEqual([...answerCounts(s.dgis).values()], [1, 1]);
        assert.equal(await s.store.leases.get(pollLeaseName("shop-2gis")), undefined, "lease released on stop");

        // Through the registered channel factory: a refused login stops start-up with a
        // ChannelError naming the bot (exit 1 in bots start).
        s.dgis.password = "rotated-password";
        await assert.rejects(
          startBots({ bots, store: s.store, logging }),
          (e: Error & { code?: string }) => e.code === "DGIS_AUTH" && /^bot shop-2gis: DGIS_AUTH: 2GIS refused the login \(401\)$/.test(e.message),
        );
      } finally {
        await logging.flush();
        await s.stop();
      }
    });
  });
}
