import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { loadPrompt, renderPrompt } from "../../src/llm/prompt.js";

test("a prompt file edited between two answers: the next one reads the new text, even at the same size; a removed one is refused", () => {
  const root = mkdtempSync(path.join(os.tmpdir(), "prompt-"));
  try {
    const bot = { name: "b", root, prompt: "p.md" };
    writeFileSync(path.join(root, "p.md"), "first text");
    assert.equal(loadPrompt(bot), "first text");
    assert.equal(loadPrompt(bot), "first text");
    writeFileSync(path.join(root, "p.md"), "other text");
    assert.equal(loadPrompt(bot), "other text");
    writeFileSync(path.join(root, "p.md"), "a longer third text");
    assert.equal(loadPrompt(bot), "a longer third text");
    rmSync(path.join(root, "p.md"));
    assert.throws(() => loadPrompt(bot), /PROMPT_UNREADABLE|cannot be read/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("renderPrompt: the same minute gives the same text; the next minute, another zone or bot, and extra variables are rendered anew", () => {
  const t = "{{bot_name}} {{now}} {{weekday}} {{x}}";
  const at = Date.UTC(2026, 11, 5, 23, 59, 10);
  assert.equal(renderPrompt(t, { botName: "a", timezone: "UTC", nowMs: at }), "a 2026-12-05 23:59 UTC Saturday {{x}}");
  assert.equal(renderPrompt(t, { botName: "a", timezone: "UTC", nowMs: at + 40_000 }), "a 2026-12-05 23:59 UTC Saturday {{x}}");
  assert.equal(renderPrompt(t, { botName: "a", timezone: "UTC", nowMs: at + 50_000 }), "a 2026-12-06 00:00 UTC Sunday {{x}}");
  assert.equal(renderPrompt(t, { botName: "a", timezone: "Asia/Kolkata", nowMs: at }), "a 2026-12-06 05:29 Asia/Kolkata Sunday {{x}}");
  assert.equal(renderPrompt(t, { botName: "b", timezone: "UTC", nowMs: at }), "b 2026-12-05 23:59 UTC Saturday {{x}}");
  assert.equal(renderPrompt(t, { botName: "a", timezone: "UTC", nowMs: at, extra: { x: "1" } }), "a 2026-12-05 23:59 UTC Saturday 1");
  assert.equal(renderPrompt(t, { botName: "a", timezone: "UTC", nowMs: at, extra: { x: "2" } }), "a 2026-12-05 23:59 UTC Saturday 2");
});
