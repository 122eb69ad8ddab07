import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { bin, cli } from "../support/cli.js";
import { Fixture } from "../support/fixture.js";

describe("bots logs tail", () => {
  test("reads a bot's log or the process log with -n, --level, --since, --grep, --json", async () => {
    const fx = new Fixture();
    try {
      const now = Date.now();
      const line = (level: number, msg: string, agoMs: number) => JSON.stringify({ level, time: new Date(now - agoMs).toISOString(), bot: "shop-tg", msg });
      fx.write(
        "logs/shop-tg.log",
        [line(30, "old info", 7_200_000), line(40, "old warn", 7_200_000), "garbage", line(30, "new info", 60_000), line(50, "new error", 1000)].join("\n") +
          "\n",
      );
      fx.write("logs/bots.log", `${line(30, "process", 0)}\n`);
      const g = ["--log-dir", fx.logDir, "logs", "tail"];
      const last2 = await cli([...g, "shop-tg", "-n", "2"]);
      assert.equal(last2.code, 0, last2.stderr);
      assert.match(last2.stdout, /^\d\d:\d\d:\d\d INFO {2}shop-tg new info\n\d\d:\d\d:\d\d ERROR shop-tg new error\n$/);
      assert.match((await cli(g)).stdout, /INFO {2}shop-tg process/);
      assert.equal((await cli([...g, "shop-tg", "--level", "warn"])).stdout.split("\n").filter(Boolean).length, 2);
      assert.equal((await cli([...g, "shop-tg", "--since", "1h"])).stdout.split("\n").filter(Boolean).length, 2);
      assert.equal((await cli([...g, "shop-tg", "--grep", "garb"])).stdout, "garbage\n");
      const json = await cli(["--json", ...g, "shop-tg", "-n", "1"]);
      assert.equal((JSON.parse(json.stdout) as { msg: string }).msg, "new error");
      const missing = await cli([...g, "other-bot"]);
      assert.equal(missing.code, 2);
      assert.match(missing.stderr, /no log file .*other-bot\.log/);
      assert.equal((await cli([...g, "--level", "loud"])).code, 2);
      assert.equal((await cli([...g, "--since", "yesterday-ish"])).code, 2);
      const b = await bin([...g, "shop-tg", "-n", "1"]);
      assert.equal(b.code, 0, b.stderr);
      assert.match(b.stdout, /ERROR shop-tg new error/);
    } finally {
      fx.cleanup();
    }
  });
});
