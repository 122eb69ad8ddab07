import assert from "node:assert/strict";
import { appendFileSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { lineMatches, tailLog } from "../../src/logs/tail.js";
import { createLogging } from "../../src/logging.js";
import { eventually } from "../support/harness.js";
import { Fixture } from "../support/fixture.js";

const rec = (level: number, msg: string, extra: Record<string, unknown> = {}, time = "2026-11-21T10:00:00.000Z") =>
  JSON.stringify({ level, time, bot: "shop-tg", thread_key: "tg:101", msg, ...extra });

describe("tailLog()", () => {
  test("last N lines, formatted; garbage lines shown as they are; a partial last line held back", async () => {
    const fx = new Fixture();
    try {
      const file = fx.write(
        "logs/shop-tg.log",
        `${[rec(30, "one"), "not json {", rec(40, "two", { msg_id: 7 }), rec(50, "three")].join("\n")}\n{"level":30,"msg":"half`,
      );
      const out: string[] = [];
      const n = await tailLog({ file, lines: 3, write: (l) => out.push(l) });
      assert.equal(n, 3);
      assert.deepEqual(out, ["not json {", "10:00:00 WARN  shop-tg tg:101 two msg_id=7", "10:00:00 ERROR shop-tg tg:101 three"]);
      const raw: string[] = [];
      await tailLog({ file, lines: 50, json: true, level: "warn", write: (l) => raw.push(l) });
      assert.deepEqual(raw, [rec(40, "two", { msg_id: 7 }), rec(50, "three")]);
      const grep: string[] = [];
      await tailLog({ file, grep: "THREE", write: (l) => grep.push(l) });
      assert.equal(grep.length, 1);
    } finally {
      fx.cleanup();
    }
  });

  test("filters: level by name or number, since by time; non-JSON lines hidden by them", () => {
    assert.equal(lineMatches(rec(30, "x"), { level: "warn" }), false);
    assert.equal(lineMatches(JSON.stringify({ level: "error", msg: "x" }), { level: "warn" }), true);
    assert.equal(lineMatches("garbage", { level: "info" }), false);
    assert.equal(lineMatches("garbage", {}), true);
    assert.equal(lineMatches("null", { level: "info" }), false);
    assert.equal(lineMatches(rec(30, "x", {}, "2026-11-21T10:00:00.000Z"), { sinceMs: Date.parse("2026-11-21T10:00:00Z") }), true);
    assert.equal(lineMatches(rec(30, "x", {}, "2026-11-21T09:59:59.000Z"), { sinceMs: Date.parse("2026-11-21T10:00:00Z") }), false);
  });

  test("-f follows a file being written, completes a partial line, survives garbage, rotation and a file created later", async () => {
    const fx = new Fixture();
    const file = path.join(fx.logDir, "bots.log");
    mkdirSync(fx.logDir, { recursive: true });
    const ac = new AbortController();
    const out: string[] = [];
    const done = tailLog({ file, lines: 10, follow: true, json: true, pollMs: 10, signal: ac.signal, write: (l) => out.push(l) });
    try {
      writeFileSync(file, `${rec(30, "first")}\n`); // created after tailing started
      await eventually(() => out.length === 1, 5000, "first line");
      appendFileSync(file, '{"level":30,"msg":"par');
      appendFileSync(file, 'tial"}\n\u0000\u0001garbage\n');
      await eventually(() => out.some((l) => l.includes("garbage")), 5000, "partial completed and garbage");
      // The line written in two parts comes out whole: the partial part was held back. Control
      // characters are shown, not sent to the terminal.
      assert.deepEqual(out.slice(1), ['{"level":30,"msg":"partial"}', "\\x00\\x01garbage"]);
      appendFileSync(file, `${rec(30, "last in old file")}\n`);
      renameSync(file, `${file}.1`);
      writeFileSync(file, `${rec(30, "in new file")}\n`);
      await eventually(() => out.length === 5, 5000, "lines across rotation");
      assert.deepEqual(
        out.slice(3).map((l) => (JSON.parse(l) as { msg: string }).msg),
        ["last in old file", "in new file"],
      );
      writeFileSync(file, '{"msg":"cut"}\n'); // truncated in place (copytruncate), shorter than before
      await eventually(() => out.length === 6, 5000, "line after truncation");
      assert.equal(out[5], '{"msg":"cut"}');
    } finally {
      ac.abort();
      await done;
      fx.cleanup();
    }
  });

  test("reads what createLogging writes, while it is being written", async () => {
    const fx = new Fixture();
    const logging = createLogging({ logDir: fx.logDir, console: false });
    const ac = new AbortController();
    const out: string[] = [];
    const done = tailLog({ file: path.join(fx.logDir, "shop-tg.log"), follow: true, pollMs: 10, signal: ac.signal, write: (l) => out.push(l) });
    try {
      const log = logging.forBot("shop-tg");
      log.child({ thread_key: "tg:5", msg_id: 3 }).warn({ api_key: "sk-secret-value" }, "model call failed; retrying");
      await logging.flush();
      await eventually(() => out.length === 1, 5000, "logged line");
      assert.match(out[0]!, /^\d\d:\d\d:\d\d WARN {2}shop-tg tg:5 model call failed; retrying msg_id=3 api_key=\[REDACTED\]$/);
    } finally {
      ac.abort();
      await done;
      await logging.flush();
      fx.cleanup();
    }
  });
});
