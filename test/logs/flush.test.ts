import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { createLogging } from "../../src/logging.js";

test("flush resolves only when every line logged before it is in the file", async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "bots-flush-"));
  try {
    const logging = createLogging({ logDir: dir, console: false });
    const log = logging.forBot("shop");
    const pad = "x".repeat(2000);
    // Many lines at once: the first starts a write, the rest queue behind it.
    for (let i = 0; i < 3000; i++) log.info({ i, pad }, "line");
    await logging.flush();
    for (const file of ["shop.log", "bots.log"]) {
      const lines = readFileSync(path.join(dir, file), "utf8").trim().split("\n");
      assert.equal(lines.length, 3000, file);
      assert.equal((JSON.parse(lines.at(-1)!) as { i: number }).i, 2999);
    }
    // The loggers stay usable after a flush, and a second flush writes the new lines too.
    log.warn("after");
    logging.flushSync();
    assert.match(readFileSync(path.join(dir, "shop.log"), "utf8"), /"msg":"after"/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
