import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { describe, test } from "node:test";
import { BIN, ensureBuilt } from "../support/cli.js";
import { dialects } from "../support/db.js";
import { Fixture } from "../support/fixture.js";
import { ENV, globals, seededHarness } from "../support/replay-fixture.js";

/**
 * Runs `bots ARGS` with stdout read by a reader that closes the pipe after `bytes` bytes, as
 * `bots … | head -c 400` does. Resolves with the exit code, what was read and all of stderr.
 */
function closedAfter(
  args: string[],
  bytes: number,
  env: Record<string, string> = {},
  cwd?: string,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; read: number; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, "--no-color", ...args], {
      cwd,
      env: { PATH: process.env.PATH ?? "", NO_COLOR: "1", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let read = 0;
    let stderr = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.stdout.on("data", (d: Buffer) => {
      read += d.length;
      if (read >= bytes) child.stdout.destroy();
    });
    child.stderr.on("data", (d) => (stderr += String(d)));
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      setImmediate(() => resolve({ code, signal, read, stderr }));
    });
  });
}

describe("a closed stdout pipe ends a command quietly", () => {
  test("bots logs tail --json -n 20000 | head -c 400: exit 141, nothing on stderr", async () => {
    await ensureBuilt();
    const fx = new Fixture();
    try {
      // 20000 lines of ~150 bytes: far more than a pipe buffer (64 KiB), so the writer blocks
      // on the full pipe and meets the closed end.
      const line = (i: number) =>
        JSON.stringify({ level: 30, time: new Date(Date.now() - 1000).toISOString(), bot: "shop-tg", msg: `line ${i} ${"x".repeat(80)}` });
      fx.write("logs/shop-tg.log", `${Array.from({ length: 20_000 }, (_, i) => line(i)).join("\n")}\n`);
      for (const json of [["--json"], []]) {
        const r = await closedAfter([...json, "--log-dir", fx.logDir, "logs", "tail", "shop-tg", "-n", "20000"], 400);
        assert.equal(r.stderr, "", "no stack, no message");
        assert.equal(r.code, 141);
        assert.ok(r.read >= 400);
      }
    } finally {
      fx.cleanup();
    }
  });

  for (const dialect of dialects()) {
    test(`bots replay --since 1h --json | head -c 400 (${dialect}): exit 141, no stack`, async () => {
      await ensureBuilt();
      const { h } = await seededHarness(dialect);
      try {
        // Each new answer is longer than a pipe buffer, so the first line already blocks the
        // writer until the reader has gone.
        h.llm.respond = () => ({ text: "y".repeat(80_000) });
        const r = await closedAfter(["--json", ...globals(h), "replay", "--since", "1h"], 400, ENV);
        assert.equal(r.stderr, "");
        assert.equal(r.code, 141);
      } finally {
        await h.stop();
      }
    });
  }
});
