import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isEmail, leadMail, normalisePhone } from "../../src/features/leads.js";
import { parseDuration, reportSubject } from "../../src/features/report.js";
import { formatCredits } from "../../src/storage/balance.js";
import type { LeadRow } from "../../src/storage/leads.js";

describe("lead validation", () => {
  test("phones are normalised to + and digits; a Russian 8-prefix becomes +7", () => {
    assert.equal(normalisePhone("+7 (900) 123-45-67"), "+79001234567");
    assert.equal(normalisePhone("8 900 123 45 67"), "+79001234567");
    assert.equal(normalisePhone("79001234567"), "+79001234567");
    assert.equal(normalisePhone("+44 20 7946 0958"), "+442079460958");
    assert.equal(normalisePhone("+1.202.555.0143"), "+12025550143");
  });

  test("too short, too long or non-numeric phones are refused", () => {
    for (const bad of ["12-34", "", "call me", "+7 900 abc 45 67", "1234567890123456", "++79001234567"]) assert.equal(normalisePhone(bad), null, bad);
  });

  test("e-mail syntax", () => {
    assert.ok(isEmail("ivan@example.com"));
    assert.ok(isEmail(" ivan.petrov+shop@mail.example.ru "));
    for (const bad of ["olya@", "@example.com", "a b@example.com", "ivan@example", "ivan@@example.com"]) assert.equal(isEmail(bad), false, bad);
  });

  test("the operator mail escapes what the customer wrote and keeps headers on one line", () => {
    const lead = {
      id: 1,
      bot: "b",
      thread_key: "tg:1",
      chat_id: "1",
      user_id: "1",
      user_name: "U",
      name: "A\r\nBcc: x@y.z <i>",
      phone: "+79001234567",
      email: null,
      note: "<script>",
      dialog: JSON.stringify([{ role: "user", text: "hi <b>", at_ms: 0 }]),
      message_id: 1,
      notified_ms: null,
      notify_attempts: 0,
      notify_error: null,
      created_ms: 0,
      updated_ms: 0,
    } satisfies LeadRow;
    const m = leadMail({ name: "b", timezone: "UTC" }, lead);
    assert.equal(m.subject, "[b] Заявка: A Bcc: x@y.z <i>");
    assert.ok(m.html.includes("&lt;script&gt;") && !m.html.includes("<script>"));
    assert.ok(m.html.includes("hi &lt;b&gt;"));
    assert.ok(m.html.includes("1970-01-01 00:00"));
  });

  test("line breaks and bidi controls in lead fields cannot forge lines or reorder text in the text part, the HTML or the subject", () => {
    const bidi = /[\u202a-\u202e\u2066-\u2069]/;
    const lead = {
      id: 1,
      bot: "b",
      thread_key: "tg:1",
      chat_id: "1",
      user_id: "1",
      user_name: "U\u202egnp.exe",
      name: "Eve\rBcc: spy@example.com\u2028To: boss@example.com",
      phone: "+79001234567",
      email: "eve@example.com",
      note: "first\nBcc: spy@example.com\r\nТелефон: +70000000000\u2066",
      dialog: JSON.stringify([{ role: "user", text: "hi\r\nE-mail: fake@example.com\u202d", at_ms: 0 }]),
      message_id: 1,
      notified_ms: null,
      notify_attempts: 0,
      notify_error: null,
      created_ms: 0,
      updated_ms: 0,
    } satisfies LeadRow;
    const m = leadMail({ name: "b", timezone: "UTC" }, lead);
    assert.equal(m.subject, "[b] Заявка: Eve Bcc: spy@example.com To: boss@example.com");
    for (const part of [m.subject, m.text, m.html]) assert.doesNotMatch(part, bidi);
    const lines = m.text.split("\n");
    // Every line at the margin is one of ours: a field, the blank line, a dialog turn.
    for (const l of lines.filter((x) => x && !x.startsWith(" ")))
      assert.match(l, /^(Имя|Телефон|E-mail|Комментарий|Пользователь|Диалог|Создана|Клиент|Бот): /, l);
    assert.equal(lines.filter((l) => l.startsWith("Телефон:")).length, 1);
    assert.ok(lines.includes("Комментарий: first Bcc: spy@example.com Телефон: +70000000000"));
    assert.ok(lines.includes("Клиент: hi") && lines.includes("    E-mail: fake@example.com"));
    assert.ok(m.html.includes("Eve Bcc: spy@example.com To: boss@example.com"));
    assert.doesNotMatch(m.html, /\r/);
  });
});

describe("report helpers", () => {
  test("durations", () => {
    assert.equal(parseDuration("24h"), 86_400_000);
    assert.equal(parseDuration("30m"), 1_800_000);
    assert.equal(parseDuration("7d"), 604_800_000);
    assert.equal(parseDuration("1.5h"), 5_400_000);
    for (const bad of ["", "24", "h", "0h", "-1h", "yesterday"]) assert.throws(() => parseDuration(bad), /not a duration/, bad);
  });

  test("credits in hundredths", () => {
    assert.equal(formatCredits(1000), "10.00");
    assert.equal(formatCredits(5), "0.05");
    assert.equal(formatCredits(-250), "-2.50");
  });

  test("subject placeholders in the bot's time zone", () => {
    assert.equal(
      reportSubject(
        "{bot}: {from} — {to}",
        { name: "shop", timezone: "Europe/Moscow" },
        { sinceMs: Date.UTC(2026, 10, 20, 6), untilMs: Date.UTC(2026, 10, 21, 6) },
      ),
      "shop: 2026-11-20 09:00 — 2026-11-21 09:00",
    );
  });
});
