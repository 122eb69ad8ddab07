import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { Cron } from "croner";
import { runCli } from "../../src/cli/program.js";
import { buildFeatures } from "../../src/features/index.js";
import { renderReport } from "../../src/features/report.js";
import { ManualClock } from "../support/clock.js";
import { dialects } from "../support/db.js";
import { eventually, Harness, TOKEN } from "../support/harness.js";
import { SmtpSink } from "../support/smtp.js";
import { userSays, waitForBotMessages } from "../support/telegram.js";

const ENV = { OPENAI_API_KEY: "sk-test-key-123456", TG_TOKEN: TOKEN, SMTP_PASSWORD: "smtp-secret-pass" };

function reportBot(dialect: "sqlite" | "mysql", smtp: SmtpSink, o: { report?: string; clock?: ManualClock; top?: string } = {}): Promise<Harness> {
  return Harness.start({
    dialect,
    env: { SMTP_PASSWORD: ENV.SMTP_PASSWORD },
    extraYaml: [
      o.top ?? "",
      "smtp:",
      "  host: 127.0.0.1",
      `  port: ${smtp.port}`,
      "  user: bots",
      "  password: ${SMTP_PASSWORD}",
      "  from: bots@example.com",
      "features:",
      "  leads:",
      "    notify_to: ops@example.com",
      "  report:",
      "    to: [boss@example.com]",
      o.report ?? "",
    ].join("\n"),
    startOptions: (h) => ({
      features: (bot, logger) =>
        buildFeatures(bot, {
          store: h.store,
          logger,
          now: o.clock?.now ?? Date.now,
          sleep: o.clock?.sleep,
          mail: { retries: 0, backoffMs: 10, reportBackoffMs: 10 },
        }),
    }),
  });
}

async function cli(h: Harness, args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await runCli(["--config-dir", h.fixture.configDir, "--db", h.db.url, "--no-color", ...args], {
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s) },
    env: ENV,
  });
  return { code, out, err };
}

function count(html: string, key: string): string | undefined {
  return new RegExp(`<td data-count="${key}">([^<]*)</td>`).exec(html)?.[1];
}

function threads(html: string): string[] {
  return [...html.matchAll(/data-thread="([^"]+)"/g)].map((m) => m[1]!);
}

for (const dialect of dialects()) {
  describe(`sales assistant: dialog report (${dialect})`, () => {
    test("bots report send: three dialogs of the day with their counts, HTML escaped, by mail and to a file", async () => {
      const smtp = new SmtpSink();
      await smtp.start();
      const h = await reportBot(dialect, smtp);
      try {
        await userSays(h.telegram, TOKEN, 501, "Привет <script>alert(1)</script>");
        await waitForBotMessages(h.telegram, 501, 1);
        h.llm.script.push({ toolCalls: [{ name: "save_lead", arguments: { name: "Мария", phone: "+79005556677" } }] }, { text: "Спасибо, Мария!" });
        await userSays(h.telegram, TOKEN, 502, "Мария, +79005556677");
        await waitForBotMessages(h.telegram, 502, 1);
        h.llm.script.push({ status: 400, body: { error: { message: "bad request", type: "invalid_request_error" } } });
        await userSays(h.telegram, TOKEN, 503, "Третий диалог");
        await eventually(async () => (await h.messages()).some((m) => m.status === "failed"), 5000, "third message failed");
        await eventually(
          async () => (await h.messages()).filter((m) => m.direction === "in" && m.status === "answered").length === 2,
          5000,
          "two answers stored",
        );
        // Two days old: outside the last 24 h.
        await h.store.messages.insertIncoming({
          bot: "shop-tg",
          channel: "tg",
          thread_key: "tg:599",
          chat_id: "599",
          user_id: "599",
          user_name: "Old",
          text: "старое сообщение",
          dedupe_key: "599:1",
          channel_message_id: "1",
          meta: null,
          status: "answered",
          created_ms: Date.now() - 2 * 86_400_000,
        });

        const sent = await cli(h, ["report", "send", "--bot", "shop-tg", "--since", "24h"]);
        assert.equal(sent.code, 0, sent.err);
        assert.match(sent.out, /^shop-tg: 3 dialogs, 3 messages, 1 leads \(.+\) → boss@example\.com\n$/);
        const [mail] = await smtp.waitFor(2).then((m) => m.filter((x) => x.to.includes("boss@example.com")));
        assert.ok(mail, "the report went to report.to");
        assert.match(mail.subject, /^Диалоги shop-tg: \d{4}-\d\d-\d\d \d\d:\d\d — \d{4}-\d\d-\d\d \d\d:\d\d$/);
        const html = mail.html;
        assert.equal(count(html, "dialogs"), "3");
        assert.equal(count(html, "messages"), "3");
        assert.equal(count(html, "answered"), "2");
        assert.equal(count(html, "failed"), "1");
        assert.equal(count(html, "leads"), "1");
        assert.equal(count(html, "credits"), "10.00");
        assert.deepEqual(threads(html), ["tg:501", "tg:502", "tg:503"]);
        assert.ok(html.includes("Привет &lt;script&gt;alert(1)&lt;/script&gt;"));
        assert.ok(!html.includes("<script>alert(1)"), "user text is escaped");
        assert.ok(html.includes("echo: Привет &lt;script&gt;"));
        assert.match(html, /<tr class="lead"><td>Мария<\/td><td>\+79005556677<\/td>/);
        assert.match(html, /Третий диалог/);
        assert.match(html, /\[ошибка: LLM_REJECTED/);
        assert.ok(!html.includes("старое сообщение"));

        // --out writes the same report instead of mailing it; --to overrides report.to.
        const file = path.join(h.fixture.root, "out", "report.html");
        const written = await cli(h, ["report", "send", "--bot", "shop-tg", "--out", file, "--json"]);
        assert.equal(written.code, 0, written.err);
        assert.equal(JSON.parse(written.out).out, file);
        const fromFile = readFileSync(file, "utf8");
        assert.deepEqual(threads(fromFile), ["tg:501", "tg:502", "tg:503"]);
        assert.equal(count(fromFile, "credits"), "10.00");
        const mailsBefore = smtp.mails.length;
        const other = await cli(h, ["report", "send", "--to", "other@example.com"]);
        assert.equal(other.code, 0, other.err);
        assert.equal(smtp.mails.length, mailsBefore + 1);
        assert.deepEqual(smtp.mails.at(-1)!.to, ["other@example.com"]);

        // Read in pages of one dialog, the report is the same.
        let paged = "";
        for await (const chunk of renderReport(h.store, h.bot, { sinceMs: Date.now() - 86_400_000, untilMs: Date.now() + 1, pageSize: 1 })) paged += chunk;
        assert.deepEqual(threads(paged), ["tg:501", "tg:502", "tg:503"]);

        const bad = await cli(h, ["report", "send", "--since", "yesterday"]);
        assert.equal(bad.code, 2);
        assert.match(bad.err, /'yesterday' is not a duration/);
      } finally {
        await h.stop();
        await smtp.stop();
      }
    });

    test("report.cron fires inside the running bot, in the bot's time zone (manual clock)", async () => {
      const smtp = new SmtpSink();
      await smtp.start();
      // 09:00 in Moscow is 06:00 UTC: the next one after now, minus 30 s.
      const next = new Cron("0 9 * * *", { timezone: "Europe/Moscow", paused: true }).nextRun(new Date())!;
      assert.equal(next.getUTCHours(), 6);
      const clock = new ManualClock(next.getTime() - 30_000);
      const h = await reportBot(dialect, smtp, { clock, top: "timezone: Europe/Moscow", report: '    cron: "0 9 * * *"\n    subject: "Отчёт {bot} до {to}"' });
      try {
        await userSays(h.telegram, TOKEN, 601, "Есть доставка в Казань?");
        await waitForBotMessages(h.telegram, 601, 1);
        await eventually(async () => (await h.messages()).length === 2, 5000, "answer stored");
        await eventually(() => clock.pending >= 2, 5000, "schedule and retry loop waiting");
        assert.equal(smtp.mails.length, 0, "nothing before 09:00");
        clock.advance(60_000);
        const [mail] = await smtp.waitFor(1);
        assert.deepEqual(mail!.to, ["boss@example.com"]);
        assert.match(mail!.subject, /^Отчёт shop-tg до \d{4}-\d\d-\d\d 09:00$/);
        assert.deepEqual(threads(mail!.html), ["tg:601"]);
        assert.ok(mail!.html.includes("Есть доставка в Казань?"));
        assert.equal(count(mail!.html, "messages"), "1");
        // It schedules the next day and sends nothing more until then.
        await eventually(() => clock.pending >= 2, 5000, "next run scheduled");
        assert.equal(smtp.mails.length, 1);
        assert.equal(h.running!.bots[0]!.features.find((f) => f.name === "report") !== undefined, true);
      } finally {
        await h.stop();
        await smtp.stop();
      }
    });
  });
}
