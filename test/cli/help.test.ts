import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { bin, cli } from "../support/cli.js";
import { Fixture } from "../support/fixture.js";

describe("bots help", () => {
  test("`bots` alone prints the help on stdout and exits 1; so does a command group without its command", async () => {
    const fx = new Fixture();
    try {
      const r = await bin([], {}, fx.root);
      assert.equal(r.code, 1);
      assert.match(r.stdout, /^Usage: bots \[options\] \[command\]/);
      assert.match(r.stdout, /balance \[options\]/);
      assert.equal(r.stderr, "");
      const group = await cli(["config"]);
      assert.equal(group.code, 1);
      assert.match(group.stdout, /^Usage: bots config/);
      assert.equal(group.stderr, "");
      const asked = await cli(["--help"]);
      assert.equal(asked.code, 0);
      assert.match(asked.stdout, /^Usage: bots/);
    } finally {
      fx.cleanup();
    }
  });

  test("`bots balance ad 5` suggests `add` (exit 2) instead of 'too many arguments'", async () => {
    const r = await cli(["balance", "ad", "5"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown command 'balance ad' \(did you mean add\?\)/);
    assert.doesNotMatch(r.stderr, /too many arguments/);
    const far = await cli(["balance", "zzzzzz"]);
    assert.equal(far.code, 2);
    assert.match(far.stderr, /unknown command 'balance zzzzzz'\n/);
  });

  test("balance, balance history, config check and db migrate have examples; --json is listed where it works", async () => {
    for (const cmd of [["balance"], ["balance", "add"], ["balance", "history"], ["config", "check"], ["db", "migrate"]]) {
      const r = await cli([...cmd, "--help"]);
      assert.equal(r.code, 0, cmd.join(" "));
      assert.match(r.stdout, /\nExamples:\n {2}bots /, `${cmd.join(" ")} has examples`);
      assert.match(r.stdout, /\n {2}--json {2,}/, `${cmd.join(" ")} lists --json`);
    }
    for (const cmd of [
      ["status"],
      ["dialogs"],
      ["replay"],
      ["logs", "tail"],
      ["prompt", "test"],
      ["coaching", "stats"],
      ["poll"],
      ["db", "copy"],
      ["report", "send"],
      ["init"],
    ]) {
      assert.match((await cli([...cmd, "--help"])).stdout, /\n {2}--json {2,}/, `${cmd.join(" ")} lists --json`);
    }
  });

  test("--json given after the command works as before it", async () => {
    const fx = new Fixture();
    try {
      const after = await cli(["--config-dir", fx.configDir, "config", "check", "--json"]);
      assert.equal(after.code, 0, after.stderr);
      assert.deepEqual(
        JSON.parse(after.stdout),
        await cli(["--json", "--config-dir", fx.configDir, "config", "check"]).then((r) => JSON.parse(r.stdout) as unknown),
      );
    } finally {
      fx.cleanup();
    }
  });

  test("replay --status lists every status it takes, expired and unconfirmed included", async () => {
    const r = await cli(["replay", "--help"]);
    const status = r.stdout.slice(r.stdout.indexOf("--status")).replace(/\s+/g, " ");
    for (const s of ["received", "failed", "no_balance", "expired", "answered", "delivering", "unconfirmed", "skipped", "filtered"])
      assert.match(status, new RegExp(`\\b${s}\\b`));
  });
});
