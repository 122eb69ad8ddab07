import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import { createLogging } from "../../src/logging.js";
import { eventually } from "../support/harness.js";
import { mountTmpfs } from "../support/tmpfs.js";

test("a log folder on a full disk: the process lives on, says so once, and writes the waiting lines when space is back", async () => {
  const fs = mountTmpfs(1);
  try {
    const problems: string[] = [];
    const logging = createLogging({ logDir: fs.dir, console: false, onFileProblem: (line) => problems.push(line) });
    const log = logging.forBot("shop");
    log.info("before");
    await logging.flush();
    fs.fill();
    // Without an 'error' listener on the file stream, the first failed write is an unhandled
    // 'error' event: an uncaught exception that fails this test.
    for (let i = 0; i < 200; i++) log.info({ i }, "during");
    await eventually(() => problems.length >= 2, 10_000, "a problem line per file");
    await logging.flush();
    assert.equal(problems.length, 2, problems.join("\n"));
    assert.match(problems.join("\n"), /cannot write .*shop\.log \(ENOSPC\)/);
    assert.match(problems.join("\n"), /cannot write .*bots\.log \(ENOSPC\)/);
    fs.free();
    log.info("after");
    await eventually(() => problems.some((p) => /shop\.log is written again/.test(p)), 10_000, "written again");
    await logging.flush();
    const lines = readFileSync(path.join(fs.dir, "shop.log"), "utf8").trim().split("\n");
    const msgs = lines.map((l) => (JSON.parse(l) as { msg: string }).msg);
    assert.equal(msgs[0], "before");
    assert.equal(msgs.at(-1), "after");
    // The lines logged while the disk was full were held, not lost.
    assert.equal(msgs.filter((m) => m === "during").length, 200);
  } finally {
    fs.unmount();
  }
});

test("a process whose log disk is full still exits (pino's exit-time flush does not spin on the failing file)", () => {
  const fs = mountTmpfs(1);
  try {
    const logging = new URL("../../src/logging.ts", import.meta.url).href;
    const script = path.join(path.dirname(fileURLToPath(import.meta.url)), `.full-disk-exit-${process.pid}.mts`);
    writeFileSync(
      script,
      [
        `import { createLogging } from ${JSON.stringify(logging)};`,
        `import { openSync, writeSync } from "node:fs";`,
        `const logging = createLogging({ logDir: ${JSON.stringify(fs.dir)}, console: false, onFileProblem: (l) => console.log(l) });`,
        `const log = logging.forBot("shop");`,
        `log.info("before");`,
        `await logging.flush();`,
        // Fill the disk from the child, then log: the lines wait, and the process exits.
        `const fd = openSync(${JSON.stringify(path.join(fs.dir, ".filler"))}, "a");`,
        "for (const size of [1 << 16, 1]) { const b = Buffer.alloc(size, 85); for (;;) { try { writeSync(fd, b); } catch { break; } } }",
        `for (let i = 0; i < 50; i++) log.info({ i }, "during");`,
        "await new Promise((r) => setTimeout(r, 300));",
        `console.log("done");`,
      ].join("\n"),
    );
    try {
      const res = spawnSync(process.execPath, ["--import", "tsx", script], { encoding: "utf8", timeout: 60_000 });
      assert.equal(res.signal, null, "the child had to be killed: it did not exit");
      assert.equal(res.status, 0, res.stderr);
      assert.match(res.stdout, /cannot write .*shop\.log \(ENOSPC\)/);
      assert.match(res.stdout, /done/);
    } finally {
      rmSync(script, { force: true });
    }
  } finally {
    fs.unmount();
  }
});
