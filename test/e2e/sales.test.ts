import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { buildFeatures } from "../../src/features/index.js";
import type { LeadRow } from "../../src/storage/leads.js";
import { ManualClock } from "../support/clock.js";
import { dialects } from "../support/db.js";
import { eventually, Harness, TOKEN } from "../support/harness.js";
import { SmtpSink, smtpYaml } from "../support/smtp.js";
import { botMessages, userSays, waitForBotMessages } from "../support/telegram.js";

const SMTP_PASSWORD = "smtp-secret-pass";

/** A sales bot (docs/sales.md) on the Telegram emulator with a real SMTP server behind it. */
async function salesBot(dialect: "sqlite" | "mysql", smtp: SmtpSink, o: { leads?: string; clock?: ManualClock; extra?: string } = {}): Promise<Harness> {
  const clock = o.clock;
  return Harness.start({
    dialect,
    env: { SMTP_PASSWORD },
    extraYaml: [...smtpYaml(smtp.port), "features:", "  leads:", "    notify_to: ops@example.com", o.leads ?? "", o.extra ?? ""].join("\n"),
    startOptions: (h) => ({
      features: (bot, logger) =>
        buildFeatures(bot, {
          store: h.store,
          logger,
          now: clock?.now ?? Date.now,
          sleep: clock?.sleep,
          mail: { retries: 0, backoffMs: 10, reportBackoffMs: 10 },
        }),
    }),
  });
}

async function leads(h: Harness): Promise<LeadRow[]> {
  return (await h.store.database.db.selectFrom("leads").selectAll().orderBy("id").execute()) as LeadRow[];
}

for (const dialect of dialects()) {
  describe(`sales assistant: leads (${dialect})`, () => {
    test("save_lead stores the lead with the dialog, the model answers in the same turn, the operator gets the mail", async () => {
      const smtp = new SmtpSink();
      await smtp.start();
      const h = await salesBot(dialect, smtp);
      try {
        await userSays(h.telegram, TOKEN, 301, "Хочу диван <b>зелёный</b>");
        await waitForBotMessages(h.telegram, 301, 1);
        h.llm.script.push(
          {
            toolCalls: [
              { name: "save_lead", arguments: { name: "Иван <Петров>", phone: "8 (900) 123-45-67", email: "ivan@example.com", note: "диван & кресло" } },
            ],
          },
          { text: "Спасибо, Иван! Менеджер позвонит." },
        );
        await userSays(h.telegram, TOKEN, 301, "Иван Петров, 8 900 123 45 67, ivan@example.com");
        const replies = await waitForBotMessages(h.telegram, 301, 2);
        assert.equal(replies[1]!.text, "Спасибо, Иван! Менеджер позвонит.");

        const offered = h.llm.requests[1]!.tools!.map((t) => t.function);
        const saveLead = offered.find((f) => f.name === "save_lead")!;
        assert.deepEqual((saveLead.parameters as { required: string[] }).required, ["name", "phone"]);
        assert.ok(
          offered.some((f) => f.name === "request_contact"),
          "Telegram bots also get the contact button tool",
        );
        const toolResult = h.llm.requests[2]!.messages.at(-1)!;
        assert.equal(toolResult.role, "tool");
        assert.match(String(toolResult.content), /^ok: lead #\d+ saved .*phone: \+79001234567/);

        const [lead] = await leads(h);
        assert.ok(lead);
        assert.equal(lead.name, "Иван <Петров>");
        assert.equal(lead.phone, "+79001234567");
        assert.equal(lead.email, "ivan@example.com");
        assert.equal(lead.note, "диван & кресло");
        assert.equal(lead.thread_key, "tg:301");
        assert.equal(lead.user_id, "301");
        const dialog = JSON.parse(lead.dialog!) as Array<{ role: string; text: string }>;
        assert.deepEqual(
          dialog.map((t) => [t.role, t.text]),
          [
            ["user", "Хочу диван <b>зелёный</b>"],
            ["assistant", "echo: Хочу диван <b>зелёный</b>"],
            ["user", "Иван Петров, 8 900 123 45 67, ivan@example.com"],
          ],
        );

        const [mail] = await smtp.waitFor(1);
        assert.deepEqual(mail!.to, ["ops@example.com"]);
        assert.equal(mail!.from, "bots@example.com");
        assert.equal(mail!.user, "bots");
        assert.equal(mail!.subject, "[shop-tg] Заявка: Иван <Петров>");
        assert.match(mail!.html, /<td data-field="Имя">Иван &lt;Петров&gt;<\/td>/);
        assert.match(mail!.html, /<td data-field="Телефон">\+79001234567<\/td>/);
        assert.match(mail!.html, /<td data-field="E-mail">ivan@example.com<\/td>/);
        assert.match(mail!.html, /<td data-field="Комментарий">диван &amp; кресло<\/td>/);
        assert.ok(mail!.html.includes("Хочу диван &lt;b&gt;зелёный&lt;/b&gt;"));
        assert.ok(mail!.html.includes("echo: Хочу диван &lt;b&gt;зелёный&lt;/b&gt;"));
        assert.ok(!mail!.html.includes("<b>зелёный</b>"), "user text is escaped");
        assert.match(mail!.text, /Телефон: \+79001234567/);
        await eventually(async () => (await leads(h))[0]!.notified_ms !== null, 5000, "lead marked notified");

        // A repeat call in the same thread updates the same lead and mails the new details.
        h.llm.script.push(
          { toolCalls: [{ name: "save_lead", arguments: { name: "Иван Петров", phone: "+7 900 123-45-67", note: "диван, кресло и доставка" } }] },
          { text: "Добавил доставку." },
        );
        await userSays(h.telegram, TOKEN, 301, "И доставку, пожалуйста");
        await waitForBotMessages(h.telegram, 301, 3);
        const [second] = [(await smtp.waitFor(2))[1]];
        const after = await leads(h);
        assert.equal(after.length, 1, "still one lead for the thread");
        assert.equal(after[0]!.id, lead.id);
        assert.equal(after[0]!.name, "Иван Петров");
        assert.equal(after[0]!.email, "ivan@example.com", "fields not given are kept");
        assert.equal(after[0]!.note, "диван, кресло и доставка");
        assert.match(second!.html, /диван, кресло и доставка/);
        assert.match(second!.html, /И доставку, пожалуйста/);
      } finally {
        await h.stop();
        await smtp.stop();
      }
    });

    test("a model looping on save_lead stores and e-mails the lead once; the repeats are told it is already saved", async () => {
      const smtp = new SmtpSink();
      await smtp.start();
      const h = await salesBot(dialect, smtp);
      try {
        // The same details four times, written differently: the normalised fields are the key.
        const call = (phone: string, name: string) => ({ toolCalls: [{ name: "save_lead", arguments: { name, phone } }] });
        h.llm.script.push(call("8 (900) 555-00-11", "Вера"), call("+7 900 555 00 11", " Вера "), call("89005550011", "Вера"), call("+79005550011", "Вера"), {
          text: "Записала, Вера!",
        });
        await userSays(h.telegram, TOKEN, 306, "Вера, 8 900 555 00 11");
        const [reply] = await waitForBotMessages(h.telegram, 306, 1);
        assert.equal(reply!.text, "Записала, Вера!");
        const results = h.llm.requests.slice(1).map((r) => String(r.messages.at(-1)!.content));
        assert.equal(results.length, 4);
        assert.match(results[0]!, /^ok: lead #\d+ saved/);
        for (const r of results.slice(1)) assert.match(r, /^ok: already saved as lead #\d+/);
        assert.equal((await leads(h)).length, 1);
        const effects = await h.store.database.db.selectFrom("tool_effects").selectAll().execute();
        assert.deepEqual(
          effects.map((e) => [e.tool, Number(e.ref)]),
          [["save_lead", (await leads(h))[0]!.id]],
        );
        await smtp.waitFor(1);
        await eventually(async () => (await leads(h))[0]!.notified_ms !== null, 5000, "lead marked notified");
        const [message] = (await h.messages()).filter((m) => m.direction === "in");
        assert.equal(message!.status, "answered");
      } finally {
        // stop() waits for every e-mail pass started by the tool calls.
        await h.stop();
        await smtp.stop();
      }
      assert.equal(smtp.mails.length, 1, "one e-mail for one lead");
    });

    test("CR/LF and bidi controls in lead fields reach the operator as one-line fields: no forged Bcc header or line", async () => {
      const smtp = new SmtpSink();
      await smtp.start();
      const h = await salesBot(dialect, smtp);
      try {
        h.llm.script.push(
          {
            toolCalls: [
              { name: "save_lead", arguments: { name: "Eve\r\nBcc: spy@example.com", phone: "+79001230000", note: "sofa\nBcc: spy@example.com\u202eexe.txt" } },
            ],
          },
          { text: "Спасибо!" },
        );
        await userSays(h.telegram, TOKEN, 307, "Eve\r\nBcc: spy@example.com");
        await waitForBotMessages(h.telegram, 307, 1);
        const [mail] = await smtp.waitFor(1);
        assert.deepEqual(mail!.to, ["ops@example.com"]);
        assert.equal(mail!.subject, "[shop-tg] Заявка: Eve Bcc: spy@example.com");
        const head = mail!.raw.slice(0, mail!.raw.search(/\r?\n\r?\n/));
        assert.doesNotMatch(head, /^bcc:/im);
        assert.doesNotMatch(mail!.text, /^Bcc:/m);
        assert.doesNotMatch(mail!.text + mail!.html + mail!.subject, /[\u202a-\u202e\u2066-\u2069]/);
        assert.match(mail!.text, /^Имя: Eve Bcc: spy@example.com$/m);
        assert.match(mail!.text, /^Комментарий: sofa Bcc: spy@example.comexe.txt$/m);
      } finally {
        await h.stop();
        await smtp.stop();
      }
    });

    test("an invalid phone goes back to the model as the tool result; no lead, no mail", async () => {
      const smtp = new SmtpSink();
      await smtp.start();
      const h = await salesBot(dialect, smtp);
      try {
        h.llm.script.push(
          { toolCalls: [{ name: "save_lead", arguments: { name: "Оля", phone: "12-34", email: "olya@" } }] },
          { text: "Проверьте, пожалуйста, номер телефона." },
        );
        await userSays(h.telegram, TOKEN, 302, "Оля, 12-34");
        const [reply] = await waitForBotMessages(h.telegram, 302, 1);
        assert.equal(reply!.text, "Проверьте, пожалуйста, номер телефона.");
        const told = h.llm.requests[1]!.messages.at(-1)!;
        assert.equal(told.role, "tool");
        assert.match(String(told.content), /^error: lead not saved: phone '12-34' is not a phone number/);
        assert.match(String(told.content), /email 'olya@' is not an e-mail address/);
        // A missing required field is refused the same way.
        h.llm.script.push({ toolCalls: [{ name: "save_lead", arguments: { phone: "+79001234567" } }] }, { text: "Как вас зовут?" });
        await userSays(h.telegram, TOKEN, 302, "+79001234567");
        await waitForBotMessages(h.telegram, 302, 2);
        assert.match(String(h.llm.requests[3]!.messages.at(-1)!.content), /missing name/);
        await eventually(async () => (await h.messages()).filter((m) => m.status === "answered").length === 2, 5000, "answers stored");
        assert.equal((await leads(h)).length, 0);
        assert.equal(smtp.mails.length, 0);
      } finally {
        await h.stop();
        await smtp.stop();
      }
    });

    test("SMTP down: the lead is kept and mailed by the retry loop on its next round", async () => {
      const smtp = new SmtpSink();
      await smtp.start();
      smtp.refuse = { code: 421, message: "Service not available, closing transmission channel" };
      const clock = new ManualClock(Date.now());
      const h = await salesBot(dialect, smtp, { clock, leads: "    retry_interval_s: 120" });
      try {
        h.llm.script.push({ toolCalls: [{ name: "save_lead", arguments: { name: "Анна", phone: "+7 912 000-00-01" } }] }, { text: "Спасибо, Анна!" });
        await userSays(h.telegram, TOKEN, 303, "Анна, +7 912 000-00-01");
        const [reply] = await waitForBotMessages(h.telegram, 303, 1);
        assert.equal(reply!.text, "Спасибо, Анна!");
        const failed = (await eventually(
          async () => {
            const [l] = await leads(h);
            return l && Number(l.notify_attempts) >= 1 ? l : undefined;
          },
          5000,
          "a failed mail attempt recorded",
        ))!;
        assert.equal(failed.notified_ms, null);
        assert.match(failed.notify_error!, /421/);
        assert.equal(failed.phone, "+79120000001");
        assert.ok(smtp.refused >= 1);
        assert.equal(smtp.mails.length, 0);

        smtp.refuse = null;
        await eventually(() => clock.pending > 0, 5000, "retry loop waiting");
        clock.advance(120_000);
        const [mail] = await smtp.waitFor(1);
        assert.equal(mail!.subject, "[shop-tg] Заявка: Анна");
        assert.match(mail!.html, /\+79120000001/);
        await eventually(async () => (await leads(h))[0]!.notified_ms !== null, 5000, "lead marked notified");
        assert.equal(smtp.mails.length, 1);
      } finally {
        await h.stop();
        await smtp.stop();
      }
    });

    test("request_contact shows the Telegram contact button; a shared contact fills the lead", async () => {
      const smtp = new SmtpSink();
      await smtp.start();
      const h = await salesBot(dialect, smtp);
      try {
        h.llm.script.push({ toolCalls: [{ name: "request_contact", arguments: {} }] }, { text: "Нажмите кнопку ниже, чтобы отправить телефон." });
        await userSays(h.telegram, TOKEN, 304, "Перезвоните мне");
        const [ask] = await waitForBotMessages(h.telegram, 304, 1);
        const markup = (typeof ask!.reply_markup === "string" ? JSON.parse(ask!.reply_markup) : ask!.reply_markup) as {
          keyboard: Array<Array<{ text: string; request_contact?: boolean }>>;
          one_time_keyboard?: boolean;
        };
        assert.deepEqual(markup.keyboard, [[{ text: "📱 Отправить телефон", request_contact: true }]]);
        assert.equal(markup.one_time_keyboard, true);

        const client = h.telegram.getClient(TOKEN, { userId: 304, chatId: 304, firstName: "Пётр", userName: "user304", type: "private" });
        const msg = client.makeMessage("") as unknown as Record<string, unknown>;
        delete msg.text;
        msg.contact = { phone_number: "79001112233", first_name: "Пётр", last_name: "Сидоров", user_id: 304 };
        await client.sendMessage(msg as never);
        const replies = await waitForBotMessages(h.telegram, 304, 2);
        assert.equal(replies[1]!.text, "echo: Мой контакт: Пётр Сидоров, 79001112233");
        assert.equal(botMessages(h.telegram, 304)[1]!.reply_markup, undefined, "no keyboard unless asked");
        const [lead] = await leads(h);
        assert.equal(lead!.phone, "+79001112233");
        assert.equal(lead!.name, "Пётр Сидоров");
        const [mail] = await smtp.waitFor(1);
        assert.equal(mail!.subject, "[shop-tg] Заявка: Пётр Сидоров");
        assert.match(mail!.html, /Перезвоните мне/);
      } finally {
        await h.stop();
        await smtp.stop();
      }
    });

    test("a shared contact alone waits for the other required fields; save_lead completes it", async () => {
      const smtp = new SmtpSink();
      await smtp.start();
      const h = await salesBot(dialect, smtp, { leads: "    required: [name, phone, email]" });
      try {
        const client = h.telegram.getClient(TOKEN, { userId: 305, chatId: 305, firstName: "Ира", userName: "user305", type: "private" });
        const msg = client.makeMessage("") as unknown as Record<string, unknown>;
        delete msg.text;
        msg.contact = { phone_number: "+7 901 000 11 22", first_name: "Ира", user_id: 305 };
        await client.sendMessage(msg as never);
        await waitForBotMessages(h.telegram, 305, 1);
        const leadsFeature = h.running!.bots[0]!.features.find((f) => f.name === "leads") as unknown as { flush(): Promise<number> };
        assert.equal(await leadsFeature.flush(), 0, "no e-mail without the required e-mail address");
        assert.equal((await leads(h))[0]!.phone, "+79010001122");

        h.llm.script.push({ toolCalls: [{ name: "save_lead", arguments: { email: "ira@example.com" } }] }, { text: "Спасибо, Ира!" });
        await userSays(h.telegram, TOKEN, 305, "ira@example.com");
        await waitForBotMessages(h.telegram, 305, 2);
        assert.match(String(h.llm.requests[2]!.messages.at(-1)!.content), /^ok: lead #\d+ saved \(name: Ира, phone: \+79010001122, email: ira@example.com\)/);
        const [mail] = await smtp.waitFor(1);
        assert.match(mail!.html, /<td data-field="E-mail">ira@example.com<\/td>/);
        assert.match(mail!.html, /<td data-field="Телефон">\+79010001122<\/td>/);
        assert.equal((await leads(h)).length, 1);
      } finally {
        await h.stop();
        await smtp.stop();
      }
    });
  });
}
