import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { formatProblem, loadBotConfigs } from "../../src/config/load.js";
import { Fixture } from "../support/fixture.js";

const good = (extra = "") =>
  ["channel: tg", "prompt: prompts/p.md", "llm:", "  model: gpt-4o-mini", "  api_key: ${KEY}", "tg:", "  token: ${TG:-1:default}", extra].join("\n");

function load(files: Record<string, string>, env: Record<string, string> = { KEY: "sk-1" }) {
  const fx = new Fixture();
  fx.write("prompts/p.md", "hi");
  for (const [name, yaml] of Object.entries(files)) fx.write(`configs/${name}`, yaml);
  fx.write("configs/examples/ignored.yaml", "not: [a bot");
  try {
    const r = loadBotConfigs(fx.configDir, env);
    return { ...r, lines: r.problems.map(formatProblem) };
  } finally {
    fx.cleanup();
  }
}

describe("config loading", () => {
  test("defaults fill in; name defaults to the file name; ${VAR:-default}; examples/ is not loaded", () => {
    const { bots, problems } = load({ "shop-tg.yaml": good() });
    assert.deepEqual(problems, []);
    const b = bots[0]!;
    assert.equal(b.name, "shop-tg");
    assert.equal(b.tg!.token, "1:default");
    assert.equal(b.llm.concurrency, 8);
    assert.equal(b.balance.cost_per_reply, 5);
    assert.equal(b.spam.max_per_minute, 6);
    assert.equal(b.timezone, "UTC");
  });

  test("recovery.resume_within: 1h by default, durations and 0 accepted, anything else named with file:line", () => {
    const withRecovery = (v: string) =>
      ["channel: tg", "prompt: prompts/p.md", "llm:", "  model: m", "  api_key: ${KEY}", "tg:", "  token: 1:abc", "recovery:", `  resume_within: ${v}`].join(
        "\n",
      );
    const { bots, problems, lines } = load({
      "a.yaml": good(),
      "b.yaml": withRecovery("30m"),
      "c.yaml": withRecovery("0"),
      "d.yaml": withRecovery("5 parsecs"),
    });
    assert.equal(bots.find((b) => b.name === "a")!.recovery.resume_within, 3_600_000);
    assert.equal(bots.find((b) => b.name === "b")!.recovery.resume_within, 1_800_000);
    assert.equal(bots.find((b) => b.name === "c")!.recovery.resume_within, 0);
    assert.equal(problems.length, 1);
    assert.match(lines[0]!, /d\.yaml:9: recovery\.resume_within: a duration like 90s, 30m, 1h or 2d, or 0/);
  });

  test("features.coaching: style keys default and are checked; a typo is an error", () => {
    const coach = (body: string) => good(`features:\n  coaching: ${body}`);
    const { bots, problems, lines } = load({
      "a.yaml": coach("{}"),
      "b.yaml": coach("{ reminders: { style: model }, weekly: { style: template }, phrase_goals: false }"),
      "c.yaml": coach("{ reminders: { style: llm } }"),
      "d.yaml": coach("{ weekly: { styles: model } }"),
    });
    const a = bots.find((x) => x.name === "a")!.features.coaching!;
    assert.deepEqual([a.reminders.style, a.weekly.style, a.phrase_goals], ["template", "model", true]);
    const b = bots.find((x) => x.name === "b")!.features.coaching!;
    assert.deepEqual([b.reminders.style, b.weekly.style, b.phrase_goals], ["model", "template", false]);
    assert.equal(problems.length, 2);
    assert.match(lines.join("\n"), /c\.yaml:\d+: features\.coaching\.reminders\.style/);
    assert.match(lines.join("\n"), /d\.yaml:\d+: features\.coaching\.weekly/);
  });

  test("reply.format: markdown by default, plain accepted; another value or an unknown key is refused with file:line", () => {
    const { bots, lines } = load({
      "d.yaml": good(),
      "p.yaml": good("reply:\n  format: plain"),
      "h.yaml": good("reply:\n  format: html"),
      "u.yaml": good("reply:\n  format: markdown\n  parse_mode: HTML"),
    });
    assert.deepEqual(bots.map((b) => [b.name, b.reply.format]).sort(), [
      ["d", "markdown"],
      ["p", "plain"],
    ]);
    assert.equal(lines.length, 2);
    assert.match(lines.join("\n"), /h\.yaml:\d+: reply\.format/);
    assert.match(lines.join("\n"), /u\.yaml:\d+: reply[^\n]*parse_mode/);
  });

  test("llm.stream: on by default, a boolean; anything else named with file:line", () => {
    const withStream = (v: string) =>
      ["channel: tg", "prompt: prompts/p.md", "llm:", "  model: m", "  api_key: ${KEY}", `  stream: ${v}`, "tg:", "  token: 1:abc"].join("\n");
    const { bots, lines } = load({ "a.yaml": good(), "b.yaml": withStream("false"), "c.yaml": withStream("sometimes") });
    assert.equal(bots.find((b) => b.name === "a")!.llm.stream, true);
    assert.equal(bots.find((b) => b.name === "b")!.llm.stream, false);
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /c\.yaml:6: llm\.stream/);
  });

  test("llm.transcription: off by default with its defaults; exactly its keys are accepted, each checked", () => {
    const tr = (body: string) =>
      ["channel: tg", "prompt: prompts/p.md", "llm:", "  model: m", "  api_key: ${KEY}", `  transcription: ${body}`, "tg:", "  token: 1:abc"].join("\n");
    const { bots, lines } = load({
      "a.yaml": good(),
      "b.yaml": tr("{ enabled: true, model: whisper-large, language: en, max_seconds: 120, cost_per_minute: 0.5, too_long_reply: Long, no_voice_reply: Off }"),
      "c.yaml": tr("{ enabled: true, max_second: 60 }"),
      "d.yaml": tr("{ cost_per_minute: 0.125, language: russian }"),
    });
    assert.deepEqual(bots.find((b) => b.name === "a")!.llm.transcription, {
      enabled: false,
      model: "whisper-1",
      language: "ru",
      max_seconds: 300,
      cost_per_minute: 0,
      too_long_reply: null,
      no_voice_reply: null,
    });
    assert.deepEqual(bots.find((b) => b.name === "b")!.llm.transcription, {
      enabled: true,
      model: "whisper-large",
      language: "en",
      max_seconds: 120,
      cost_per_minute: 0.5,
      too_long_reply: "Long",
      no_voice_reply: "Off",
    });
    const text = lines.join("\n");
    assert.match(text, /c\.yaml:6: llm\.transcription\.max_second: unknown key/);
    assert.match(text, /d\.yaml:6: llm\.transcription\.cost_per_minute: at most two decimals/);
    assert.match(text, /d\.yaml:6: llm\.transcription\.language: a two-letter ISO-639-1 code/);
  });

  test("an unquoted ${N} becomes a number", () => {
    const { bots, problems } = load({ "a.yaml": good("history:\n  max_messages: ${N}") }, { KEY: "k", N: "12" });
    assert.deepEqual(problems, []);
    assert.equal(bots[0]!.history.max_messages, 12);
  });

  test("the old per-bot listener keys (tg.webhook.port/path/host, vk.callback.port) are refused with where they went", () => {
    const { lines, bots } = load(
      { "a.yaml": good("  mode: webhook\n  webhook:\n    url: https://example.org\n    port: 8443\n    secret_token: abc") },
      { KEY: "k" },
    );
    assert.equal(bots.length, 0);
    assert.match(
      lines.join("\n"),
      /a\.yaml:11: tg\.webhook\.port: removed: `bots start` serves webhooks and callbacks on its one HTTP server \(--http-port, --http-host\) at \/tg\/<bot> and \/vk\/<bot>/,
    );
  });

  test("vk callback mode without callback.secret is refused with file:line; long poll needs none", () => {
    const vk = (extra: string) =>
      ["channel: vk", "prompt: prompts/p.md", "llm: { model: m, api_key: k }", "vk:", "  token: t", "  group_id: 5", extra].join("\n");
    const { bots, lines } = load({
      "cb.yaml": vk("  callback:\n    confirmation: abc"),
      "ok.yaml": vk("  callback:\n    confirmation: abc\n    secret: s3cr3t"),
      "lp.yaml": vk("  mode: longpoll"),
    });
    assert.deepEqual(bots.map((b) => b.name).sort(), ["lp", "ok"]);
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /cb\.yaml:[78]: vk\.callback\.secret: required when vk\.mode is callback/);
  });

  test("a YAML alias bomb is one file:line problem of its file; the other bots still load", () => {
    const levels = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    const bomb = [
      "channel: tg",
      'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
      ...levels.slice(1).map((l, i) => `${l}: &${l} [${Array(9).fill(`*${levels[i]}`).join(", ")}]`),
    ].join("\n");
    const { bots, lines } = load({ "bomb.yaml": bomb, "good.yaml": good() });
    assert.deepEqual(
      bots.map((b) => b.name),
      ["good"],
    );
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(lines[0]!, /bomb\.yaml:3: YAML: Excessive alias count .*at most 100 nodes/);
  });

  test("every problem at once, each with file:line: field", () => {
    const { lines, bots } = load(
      {
        "a.yaml": good("  groups: sometimes"),
        "b.yaml": ["channel: tg", "prompt: prompts/missing.md", "llm:", "  model: m", "  api_key: ${NOPE}", "tg: { token: '1:x' }"].join("\n"),
        "c.yaml": "channel: tg\nprompt: [unclosed\n",
        "d.yaml": [
          "name: a",
          "channel: tg",
          "prompt: prompts/p.md",
          "llm: { model: m, api_key: k, temprature: 1 }",
          "tg: { token: '1:x' }",
          "balance: { cost_per_reply: -1 }",
        ].join("\n"),
        "e.yaml": ["name: e", "channel: vk", "prompt: prompts/p.md", "llm: { model: m, api_key: k }", "tg: { token: '1:x' }"].join("\n"),
      },
      {},
    );
    assert.equal(bots.length, 0);
    const text = lines.join("\n");
    assert.match(text, /configs\/a\.yaml:5: llm\.api_key: environment variable KEY is not set/);
    assert.match(text, /configs\/b\.yaml:5: llm\.api_key: environment variable NOPE is not set/);
    assert.match(text, /configs\/c\.yaml:\d+: YAML: /);
    assert.match(text, /configs\/d\.yaml:4: llm\.temprature: unknown key \(did you mean 'temperature'\?\)/);
    assert.match(text, /configs\/d\.yaml:6: balance\.cost_per_reply: /);
    assert.match(text, /configs\/e\.yaml:\d: vk: section 'vk' is required for channel vk/);
    assert.match(text, /configs\/e\.yaml:5: tg: section 'tg' does not fit channel vk/);
  });

  test("wrong types, enum values, a missing prompt file and duplicate names", () => {
    const { lines } = load({
      "a.yaml": good("  groups: sometimes"),
      "b.yaml": ["name: a", "channel: tg", "prompt: prompts/nope.md", "llm: { model: m, api_key: k, concurrency: many }", "tg: { token: '1:x' }"].join("\n"),
      "c.yaml": ["name: a", "channel: tg", "prompt: prompts/p.md", "llm: { model: m, api_key: k }", "tg: { token: '1:x' }"].join("\n"),
    });
    const text = lines.join("\n");
    assert.match(text, /configs\/a\.yaml:8: tg\.groups: /);
    assert.match(text, /configs\/b\.yaml:4: llm\.concurrency: .*number/i);
    assert.match(text, /configs\/b\.yaml:1: name: duplicate bot name 'a' \(also in .*configs\/a\.yaml\)/);
    assert.match(text, /configs\/c\.yaml:1: name: duplicate bot name 'a' \(also in .*configs\/a\.yaml\)/);
    const prompt = load({
      "p.yaml": ["channel: tg", "prompt: prompts/nope.md", "llm: { model: m, api_key: k }", "tg: { token: '1:x' }"].join("\n"),
    }).lines.join("\n");
    assert.match(prompt, /configs\/p\.yaml:2: prompt: prompt file prompts\/nope\.md not found/);
  });
});
