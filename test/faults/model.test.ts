import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { runBots } from "../support/cli.js";
import { dialects } from "../support/db.js";
import { checkBooks, Checks, FaultBed, modelYaml, pause } from "../support/faults.js";
import { eventually } from "../support/harness.js";
import { lastUserText, type RecordedRequest } from "../support/openai-server.js";
import { SmtpSink, smtpYaml } from "../support/smtp.js";
import { botMessages, userSays } from "../support/telegram.js";

const TG_TOKEN = "730001:TEST-token_leads";
/** The model fails after its save_lead call; the model calls save_lead for ever (until the loop's cap). */
const FAILS = 31;
const LOOPS = 32;
const LEAD = { name: "Иван Петров", phone: "8 900 123 45 67" };
const SETTLED = ["answered", "unconfirmed", "failed", "expired", "no_balance", "filtered", "skipped"];

/** Whether the last message of a request is the result of a tool call (the model is mid-loop). */
const afterTool = (req: RecordedRequest) => req.messages.at(-1)?.role === "tool";

for (const dialect of dialects()) {
  describe(`the model fails mid tool-loop: save_lead stores and e-mails a lead once, under bots start and bots replay (${dialect})`, () => {
    let bed: FaultBed;
    const smtp = new SmtpSink();
    let balanceBefore = 0;
    let replay: { code: number | null; stderr: string } = { code: -1, stderr: "" };
    /** The model is up again: it finishes each loop with a text. */
    let recovered = false;

    before(async () => {
      bed = await FaultBed.create(dialect);
      await smtp.start();
      bed.closers.push(() => smtp.stop());
      bed.llm.respond = (req) => {
        const said = lastUserText(req);
        if (said.startsWith("loop")) return { toolCalls: [{ name: "save_lead", arguments: LEAD }] };
        if (!afterTool(req)) return { toolCalls: [{ name: "save_lead", arguments: LEAD }] };
        // The model's second turn of the same message: down until recovered.
        return recovered ? { text: "Спасибо, менеджер позвонит." } : { status: 500, body: { error: { message: "upstream overloaded", type: "server_error" } } };
      };
      bed.fx.bot(
        "tg-sales",
        [
          "channel: tg",
          "prompt: prompts/p.md",
          ...modelYaml(bed.llm, ["  max_retries: 0"]),
          "tg:",
          "  token: ${TG}",
          `  api_root: ${bed.telegram.config.apiURL}`,
          ...smtpYaml(smtp.port),
          "features:",
          "  leads:",
          "    notify_to: ops@example.com",
        ].join("\n"),
      );
      bed.env = { TG: TG_TOKEN, SMTP_PASSWORD: "smtp-secret-pass" };
      balanceBefore = (await bed.store.balance.get("default"))!.balance;
      const { child } = await bed.start();
      await userSays(bed.telegram, TG_TOKEN, FAILS, "Иван Петров, 8 900 123 45 67");
      await userSays(bed.telegram, TG_TOKEN, LOOPS, "loop: Иван Петров, 8 900 123 45 67");
      await eventually(
        async () => {
          const rows = await bed.incoming();
          return rows.length === 2 && rows.every((r) => SETTLED.includes(r.status));
        },
        60_000,
        "both settled",
      ).catch(() => undefined);
      // Mails of the leads (sent in the background) arrive now, if any.
      await pause(2000);
      child.kill("SIGTERM");
      await eventually(() => child.exitCode !== null || child.signalCode !== null, 30_000, "bots start stopped").catch(() => undefined);
      // The model is back; the operator resends what failed.
      recovered = true;
      replay = await runBots(["replay", "--send", "--since", "1h"], { cwd: bed.fx.root, timeoutMs: 90_000 });
      await pause(2000);
    });
    after(async () => {
      await bed?.close();
    });

    const leads = () => bed.store.database.db.selectFrom("leads").selectAll().execute();

    test("save_lead then a model failure, then `bots replay --send`: one lead stored, one e-mail, the answer sent once", async () => {
      const c = new Checks();
      // The replay exits 1: the looping message fails again (that is the other case).
      await c.check("`bots replay --send` ran", () => assert.ok(replay.code === 0 || replay.code === 1, replay.stderr));
      await c.check("the replay answered the message", async () =>
        assert.equal((await bed.incoming()).find((r) => r.thread_key === `tg:${FAILS}`)?.status, "answered"),
      );
      await c.check("one lead stored for the chat", async () => assert.equal((await leads()).filter((l) => l.thread_key === `tg:${FAILS}`).length, 1));
      await c.check("the answer sent once", () =>
        assert.deepEqual(
          botMessages(bed.telegram, FAILS).map((m) => m.text),
          ["Спасибо, менеджер позвонит."],
        ),
      );
      c.done();
    });

    test("a model stuck calling save_lead: the loop stops, the lead is stored once", async () => {
      const c = new Checks();
      await c.check("the loop was stopped", () => assert.ok(bed.llm.requests.filter((r) => lastUserText(r).startsWith("loop")).length < 20));
      await c.check("one lead stored for the chat", async () => assert.equal((await leads()).filter((l) => l.thread_key === `tg:${LOOPS}`).length, 1));
      await c.check("nothing sent twice", () => assert.ok(botMessages(bed.telegram, LOOPS).length <= 1));
      c.done();
    });

    test("the operator gets one e-mail per lead; ledger = balance, no open reservation, charged = answers", async () => {
      const c = new Checks();
      await c.check("one e-mail per distinct lead", () => assert.equal(smtp.mails.length, 2, smtp.mails.map((m) => m.subject ?? "").join(" | ")));
      await checkBooks(c, bed, balanceBefore);
      c.done();
    });
  });
}
