import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, truncateSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import { createLogging } from "../../src/logging.js";
import { eventually } from "../support/harness.js";

/**
 * Log rotation is `logrotate` with `copytruncate` (README "Running as a service"): the log files
 * are opened in append mode, so after logrotate copies a file and truncates it, the next line is
 * written at the new end (offset 0), not at the old offset with a hole of NUL bytes before it.
 */
describe("log rotation with copytruncate", () => {
  test("lines written after copy + truncate start the file; the copy keeps the earlier lines", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "bots-rotate-"));
    try {
      const logging = createLogging({ logDir: dir, console: false });
      const log = logging.forBot("shop-tg");
      for (let i = 0; i < 200; i++) log.info({ i }, "before rotation");
      await logging.flush();
      const file = path.join(dir, "shop-tg.log");
      // Writes are asynchronous: wait until all 200 lines are in the file.
      const before = await eventually(
        async () => {
          await logging.flush();
          const text = readFileSync(file, "utf8");
          return text.trim().split("\n").length === 200 ? text : undefined;
        },
        5000,
        "200 lines written",
      ).then((t) => t!);
      // What logrotate's copytruncate does.
      copyFileSync(file, `${file}.1`);
      truncateSync(file, 0);
      log.info("after rotation");
      await logging.flush();
      const after = await eventually(
        async () => {
          await logging.flush();
          const text = readFileSync(file, "utf8");
          return text.includes("after rotation") ? text : undefined;
        },
        5000,
        "the line after rotation",
      ).then((t) => t!);
      assert.ok(!after.includes("\u0000"), "no NUL hole where the old content was");
      const lines = after.trim().split("\n");
      assert.equal(lines.length, 1);
      assert.equal((JSON.parse(lines[0]!) as { msg: string }).msg, "after rotation");
      assert.equal(readFileSync(`${file}.1`, "utf8"), before);
      // The process log gets the line too, through its own stream: wait for it as well.
      await eventually(
        async () => {
          await logging.flush();
          return readFileSync(path.join(dir, "bots.log"), "utf8").includes("after rotation");
        },
        5000,
        "the line after rotation in bots.log",
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
