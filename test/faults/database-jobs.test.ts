import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { branchCursorName } from "../../src/poll-2gis.js";
import { dialects } from "../support/db.js";
import { checkBooks, Checks, ended, FaultBed, modelYaml, pause } from "../support/faults.js";
import { eventually } from "../support/harness.js";
import { requestParam, startResetProxy } from "../support/reset-proxy.js";
import { botMessages, userSays, waitForBotMessages } from "../support/telegram.js";
import { FakeTwoGis } from "../support/twogis-server.js";

const BRANCH = "70000001000000001";
const TG_TOKEN = "740001:TEST-token_coach";

for (const dialect of dialects()) {
  describe(`the database unreachable under a 2GIS poll and a coaching reminder (${dialect})`, () => {
    const beds: FaultBed[] = [];
    after(async () => {
      for (const b of beds) await b.close();
    });

    test("`bots poll 2gis` loses the database mid-run: the cursor passes only recorded reviews; the next run answers the rest; each review answered once", async () => {
      const bed = await FaultBed.create(dialect);
      beds.push(bed);
      const dgis = new FakeTwoGis();
      await dgis.start();
      bed.closers.push(() => dgis.stop());
      for (let i = 0; i < 8; i++) dgis.addReview(BRANCH, { text: `review ${i}`, rating: 1 + (i % 5) });
      bed.llm.latencyMs = 300;
      bed.fx.write("prompts/review.md", "Answer the review: {{review_text}}");
      bed.fx.bot(
        "shop-2gis",
        [
          "channel: 2gis",
          "prompt:",
          "  reviews: prompts/review.md",
          ...modelYaml(bed.llm, ["  max_retries: 0"]).map((l) => l.replace("concurrency: 4", "concurrency: 2")),
          "2gis:",
          `  api_base_url: ${dgis.url}`,
          "  login: ${DGIS_LOGIN}",
          "  password: ${DGIS_PASSWORD}",
          `  branch_ids: ["${BRANCH}"]`,
        ].join("\n"),
      );
      bed.env = { DGIS_LOGIN: dgis.login, DGIS_PASSWORD: dgis.password };
      const before = (await bed.store.balance.get("default"))!.balance;
      const c = new Checks();

      const first = bed.spawn(["poll", "2gis", "--lease-ttl", "2"]);
      await eventually(() => dgis.answers.length >= 2 || first.exitCode !== null, 30_000, "answers posted");
      await bed.db.down();
      await eventually(() => first.exitCode !== null, 15_000).catch(() => undefined);
      bed.db.up();
      const run1 = await ended(first, 90_000);
      // The 2GIS acknowledgement: the stored cursor. Every review at or before it is recorded as answered or skipped.
      const cursor = await bed.store.cursors.get("shop-2gis", branchCursorName(BRANCH));
      const rows = await bed.incoming("shop-2gis");
      const passed = dgis.reviews.filter((r) => typeof cursor === "string" && Date.parse(r.dateCreated) <= Date.parse(cursor));
      await c.check("0 acknowledged-but-unrecorded (the cursor passed no review without an answered or skipped row)", () =>
        assert.deepEqual(
          passed
            .map((r) => ({ review: r.text, row: rows.find((m) => m.text === r.text)?.status ?? "none" }))
            .filter((x) => x.row !== "answered" && x.row !== "skipped"),
          [],
        ),
      );
      // The cut run either waited the outage out (exit 0) or gave up naming the storage error (exit 1, the cursor kept).
      await c.check("the cut run ended 0 or 1", () => assert.ok(run1.code === 0 || run1.code === 1, `${run1.code}: ${run1.stderr}`));

      // The cut run could not hand its lease back: the next one starts once it has lapsed.
      await pause(2500);
      const second = await ended(bed.spawn(["poll", "2gis", "--lease-ttl", "2"]), 90_000);
      await c.check("the next run exits 0", () => assert.equal(second.code, 0, second.stderr));
      await c.check("each review answered exactly once on 2GIS", () =>
        assert.deepEqual(
          dgis.reviews.map((r) => dgis.answersTo(r.id).length),
          Array(8).fill(1),
        ),
      );
      await c.check("every review recorded `answered`", async () =>
        assert.deepEqual(
          (await bed.incoming("shop-2gis")).map((r) => r.status),
          Array(8).fill("answered"),
        ),
      );
      await checkBooks(c, bed, before);
      c.done();
    });

    test("a coaching reminder whose send is in flight when the database goes away: sent once, recorded `sent` once the database is back, never sent again", async () => {
      const bed = await FaultBed.create(dialect);
      beds.push(bed);
      let release!: () => void;
      const released = new Promise<void>((r) => (release = r));
      let held = false;
      const proxy = await startResetProxy(bed.telegram.config.apiURL, (r) => {
        if (held || !r.path.endsWith("/sendMessage") || !/напоминаю/.test(requestParam(r.body, "text") ?? "")) return undefined;
        held = true;
        return { hold: released };
      });
      bed.closers.push(async () => release(), proxy.stop);
      bed.fx.bot(
        "coach-tg",
        [
          "channel: tg",
          "prompt: prompts/p.md",
          ...modelYaml(bed.llm),
          "timezone: Europe/Berlin",
          "features:",
          "  coaching: { phrase_goals: false, reminders: { interval_s: 5 }, weekly: { enabled: false } }",
          "tg:",
          "  token: ${TG}",
          `  api_root: ${proxy.url}`,
        ].join("\n"),
      );
      bed.env = { TG: TG_TOKEN };
      bed.llm.respond = () => ({ text: "profile" });
      const before = (await bed.store.balance.get("default"))!.balance;
      await bed.start();
      const user = 51;
      const say = async (text: string, replies = 1) => {
        const n = botMessages(bed.telegram, user).length;
        await userSays(bed.telegram, TG_TOKEN, user, text);
        await waitForBotMessages(bed.telegram, user, n + replies, 20_000);
      };
      // Due a minute ago in Berlin: the next scheduler pass sends it.
      const due = new Date(Date.now() - 60_000).toLocaleTimeString("en-GB", { timeZone: "Europe/Berlin", hour: "2-digit", minute: "2-digit", hour12: false });
      for (const text of ["/start", "Аня", "Europe/Berlin", "читать 20 минут", due]) await say(text);
      await say("/skip", 2);
      await say("да");
      await eventually(() => held, 30_000, "the reminder's sendMessage reached the Bot API");
      await bed.db.down();
      release();
      // The reminder goes out while nothing can be recorded; a few scheduler passes meet the fault.
      await eventually(() => botMessages(bed.telegram, user).some((m) => /напоминаю/.test(m.text)), 10_000, "the reminder delivered");
      await pause(6000);
      bed.db.up();
      const c = new Checks();
      const deliveries = async () => (await bed.store.coaching.deliveries("coach-tg", String(user))).filter((d) => d.kind === "reminder").map((d) => d.status);
      await eventually(async () => (await deliveries()).join() === "sent", 20_000).catch(() => undefined);
      // Two more scheduler passes: a second reminder would go out now.
      await pause(11_000);
      await c.check("the reminder reached the user exactly once", () =>
        assert.equal(botMessages(bed.telegram, user).filter((m) => /напоминаю/.test(m.text)).length, 1),
      );
      await c.check("one reminder delivery, recorded `sent`", async () => assert.deepEqual(await deliveries(), ["sent"]));
      await c.check("no proactive message left pending or delivering", async () => {
        const out = await bed.store.database.db.selectFrom("messages").select(["status", "text"]).where("direction", "=", "out").execute();
        assert.deepEqual(
          out.filter((r) => r.status === "pending" || r.status === "delivering").map((r) => `${r.status}: ${r.text.slice(0, 40)}`),
          [],
        );
      });
      await checkBooks(c, bed, before);
      c.done();
    });
  });
}
