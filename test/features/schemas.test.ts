import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { formatProblem, loadBotConfigs } from "../../src/config/load.js";
import { Fixture } from "../support/fixture.js";

const BASE = ["channel: tg", "prompt: prompts/p.md", "llm: { model: m, api_key: sk-x }", "tg: { token: '123:abc' }"];

function load(extra: string[]): { problems: string[]; bot?: ReturnType<typeof loadBotConfigs>["bots"][number] } {
  const fx = new Fixture();
  try {
    fx.write("prompts/p.md", "p");
    fx.bot("b", ["name: b", ...BASE, ...extra].join("\n"));
    const r = loadBotConfigs(fx.configDir, { SMTP_PASSWORD: "pw-123456" });
    return { problems: r.problems.map(formatProblem), bot: r.bots[0] };
  } finally {
    fx.cleanup();
  }
}

describe("features.leads / features.report / smtp config", () => {
  test("defaults are filled in", () => {
    const { problems, bot } = load([
      "smtp: { host: mail.example.com, user: u, password: '${SMTP_PASSWORD}', from: bots@example.com }",
      "features:",
      "  leads: { notify_to: ops@example.com }",
      "  report: { to: boss@example.com }",
    ]);
    assert.deepEqual(problems, []);
    assert.deepEqual(bot!.features.leads, {
      required: ["name", "phone"],
      notify_to: ["ops@example.com"],
      tool_description: bot!.features.leads!.tool_description,
      contact_button: true,
      contact_button_text: "📱 Отправить телефон",
      retry_interval_s: 60,
    });
    assert.deepEqual(bot!.features.report, { to: ["boss@example.com"], cron: "0 9 * * *", period: "24h", subject: "Диалоги {bot}: {from} — {to}" });
    assert.equal(bot!.smtp!.secure, false);
    assert.equal(bot!.smtp!.password, "pw-123456");
  });

  test("every problem is reported with its field", () => {
    const { problems } = load([
      "features:",
      "  leads: { notify_to: [nobody], required: [phone, fax], retry_s: 5 }",
      "  report: { to: [], cron: 'every day', period: daily }",
    ]);
    const text = problems.join("\n");
    assert.match(text, /features\.leads\.notify_to\.0: not an e-mail address/);
    assert.match(text, /features\.leads\.required\.1:/);
    assert.match(text, /features\.leads\.retry_s: unknown key/);
    assert.match(text, /features\.report\.to: at least one address/);
    assert.match(text, /features\.report\.cron: not a cron expression/);
    assert.match(text, /features\.report\.period: a duration like 24h/);
  });

  test("smtp is required for mail, and user comes with password", () => {
    assert.match(load(["features:", "  report: { to: a@example.com }"]).problems.join("\n"), /smtp: required for features\.report/);
    assert.deepEqual(load(["features:", "  leads: {}"]).problems, [], "leads without notify_to only store");
    assert.match(load(["smtp: { host: h, user: u, from: a@example.com }"]).problems.join("\n"), /smtp: give both user and password/);
  });
});
