import assert from "node:assert/strict";
import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { askNewBot } from "../../src/cli/init.js";
import { renderBotYaml } from "../../src/config/init.js";
import { loadBotConfigs } from "../../src/config/load.js";
import { ScriptedTerminal } from "../support/terminal.js";
import { bin, cli } from "../support/cli.js";
import { Fixture } from "../support/fixture.js";

/** A fixture whose `.env` holds `content`, and the global options pointing at it (never the checkout's .env). */
function withEnv(content: string): { fx: Fixture; g: string[]; env: () => string } {
  const fx = new Fixture();
  const file = fx.write(".env", content);
  return { fx, g: ["--config-dir", fx.configDir, "--env-file", file], env: () => readFileSync(file, "utf8") };
}

describe("bots init", () => {
  test("with flags writes a config and prompt that pass the check, and appends the variables to .env without touching a value there", async () => {
    const { fx, g, env } = withEnv("# mine\nOPENAI_API_KEY=sk-kept-000000\nOTHER=1");
    try {
      fx.write(".env.example", "OPENAI_API_KEY=\n");
      const r = await cli(
        [
          ...g,
          "init",
          "--yes",
          "--channel",
          "tg",
          "--name",
          "shop-tg",
          "--model",
          "gpt-4o-mini",
          "--base-url",
          "http://127.0.0.1:11434/v1",
          "--timezone",
          "Asia/Novosibirsk",
          "--cost",
          "2.50",
          "--account",
          "client-a",
          "--prompt-text",
          "Ты помощник магазина {{bot_name}}.",
        ],
        {},
      );
      assert.equal(r.code, 0, r.stderr);
      assert.match(
        r.stdout,
        /wrote .*configs\/shop-tg\.yaml\nwrote .*prompts\/shop-tg\.md\nadded SHOP_TG_TOKEN to .*\.env \(empty; values already there are kept\)/,
      );
      assert.match(r.stdout, /shop-tg +tg +yes +gpt-4o-mini +client-a\nshop-tg OK/);
      assert.match(r.stdout, /Set SHOP_TG_TOKEN in .*\.env/, "OPENAI_API_KEY is set in .env already");
      assert.equal(readFileSync(path.join(fx.root, "prompts/shop-tg.md"), "utf8"), "Ты помощник магазина {{bot_name}}.\n");
      assert.equal(env(), "# mine\nOPENAI_API_KEY=sk-kept-000000\nOTHER=1\n\n# shop-tg (tg), written by bots init\nSHOP_TG_TOKEN=\n");
      assert.equal(readFileSync(path.join(fx.root, ".env.example"), "utf8"), "OPENAI_API_KEY=\n", "the tracked example is not edited");
      const yaml = readFileSync(path.join(fx.configDir, "shop-tg.yaml"), "utf8");
      assert.match(yaml, /api_key: \$\{OPENAI_API_KEY\}/);
      assert.match(yaml, /token: \$\{SHOP_TG_TOKEN\}/);
      assert.match(yaml, /\ntimezone: Asia\/Novosibirsk\n/);
      assert.match(yaml, /\n {2}base_url: http:\/\/127\.0\.0\.1:11434\/v1\n/);
      // A bad zone is refused before anything is written.
      const bad = await cli([...g, "init", "--yes", "--name", "zone-tg", "--timezone", "Mars/Olympus"]);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /--timezone: 'Mars\/Olympus' is not an IANA time zone/);
      assert.ok(!existsSync(path.join(fx.configDir, "zone-tg.yaml")));
      // With the real variables set the config loads with what was asked for.
      const { bots, problems } = loadBotConfigs(fx.configDir, { OPENAI_API_KEY: "sk-real-000000", SHOP_TG_TOKEN: "42:abc" });
      assert.deepEqual(problems, []);
      assert.deepEqual(
        [bots[0]!.name, bots[0]!.channel, bots[0]!.llm.model, bots[0]!.balance.account, bots[0]!.balance.cost_per_reply],
        ["shop-tg", "tg", "gpt-4o-mini", "client-a", 2.5],
      );
      const check = await cli(["--config-dir", fx.configDir, "config", "check"], { OPENAI_API_KEY: "sk-real-000000", SHOP_TG_TOKEN: "42:abc" });
      assert.equal(check.code, 0, check.stderr);
    } finally {
      fx.cleanup();
    }
  });

  test("refuses to overwrite without --force; --force overwrites; variables are not repeated", async () => {
    const { fx, g, env } = withEnv("");
    try {
      const args = [...g, "init", "--yes", "--name", "shop-tg"];
      assert.equal((await cli(args)).code, 0);
      const file = path.join(fx.configDir, "shop-tg.yaml");
      const before = readFileSync(file, "utf8");
      const again = await cli([...args, "--model", "other-model"]);
      assert.equal(again.code, 2);
      assert.match(again.stderr, /shop-tg\.yaml and .*shop-tg\.md already exist\n.*hint: choose another --name, or pass --force/);
      assert.equal(readFileSync(file, "utf8"), before);
      const forced = await cli([...args, "--model", "other-model", "--force"]);
      assert.equal(forced.code, 0, forced.stderr);
      assert.match(readFileSync(file, "utf8"), /model: "other-model"/);
      assert.equal(env(), "# shop-tg (tg), written by bots init\nOPENAI_API_KEY=\nSHOP_TG_TOKEN=\n");
    } finally {
      fx.cleanup();
    }
  });

  test("vk and 2gis configs pass the check; bad or missing flags exit 2 and write nothing", async () => {
    const { fx, g: global } = withEnv("");
    try {
      const g = [...global, "--json", "init", "--yes"];
      const vk = await cli([...g, "--channel", "vk", "--name", "shop-vk", "--group-id", "123456"]);
      assert.equal(vk.code, 0, vk.stderr);
      assert.deepEqual((JSON.parse(vk.stdout) as { variables_to_set: string[] }).variables_to_set, [
        "OPENAI_API_KEY",
        "SHOP_VK_TOKEN",
        "SHOP_VK_CONFIRMATION",
        "SHOP_VK_SECRET",
      ]);
      const dg = await cli([...g, "--channel", "2gis", "--name", "shop-2gis", "--branch-id", "70000001000000001,70000001000000002"]);
      assert.equal(dg.code, 0, dg.stderr);
      const env = { OPENAI_API_KEY: "k", SHOP_VK_TOKEN: "t", SHOP_VK_CONFIRMATION: "c", SHOP_VK_SECRET: "s", SHOP_2GIS_LOGIN: "l", SHOP_2GIS_PASSWORD: "p" };
      const { bots, problems } = loadBotConfigs(fx.configDir, env);
      assert.deepEqual(problems, []);
      assert.deepEqual(bots.find((b) => b.name === "shop-2gis")!["2gis"]!.branch_ids, ["70000001000000001", "70000001000000002"]);
      assert.equal(bots.find((b) => b.name === "shop-vk")!.vk!.group_id, 123456);
      for (const bad of [
        ["--name", "Shop TG"],
        ["--channel", "vk", "--name", "x-vk"],
        ["--name", "x", "--cost", "1.234"],
        ["--name", "y", "--token-var", "lower"],
        [],
      ]) {
        const r = await cli([...global, "init", "--yes", ...bad]);
        assert.equal(r.code, 2, `${bad.join(" ")}: ${r.stderr}`);
      }
      // The check runs after writing: a name another file already uses is reported, exit 2.
      fx.bot("legacy", "name: clash\nchannel: tg\nprompt: prompts/shop-vk.md\nllm: {model: m, api_key: k}\ntg: {token: '1:a'}\n");
      const clash = await cli([...global, "init", "--yes", "--name", "clash"]);
      assert.equal(clash.code, 2);
      assert.match(clash.stderr, /legacy\.yaml:\d+: name: duplicate bot name 'clash' \(also in .*clash\.yaml\)/);
      assert.ok(!existsSync(path.join(fx.configDir, "x-vk.yaml")));
      assert.ok(!existsSync(path.join(fx.configDir, "x.yaml")));
    } finally {
      fx.cleanup();
    }
  });

  test("the wizard asks what no flag gave and builds the same config", async () => {
    const term = new ScriptedTerminal([
      [/Channel/, "\u001b[B\r"], // Telegram → VK
      [/Bot name/, "\u0015shop-vk\r"],
      [/Model/, "\r"],
      [/base URL/, "http://127.0.0.1:8000/v1\r"],
      [/model API key/, "\r"],
      [/community token/, "\r"],
      [/community id/, "12x\r"],
      [/a number/, "\b\b\r"], // the validator refuses "12x"; erase to "1"
      [/confirmation string/, "\r"],
      [/Callback API secret/, "MY_SECRET\r"],
      [/Time zone/, "\u0015Europe/Nowhere\r"],
      [/IANA zone/, "\u0015Asia/Tokyo\r"], // the validator refuses the unknown zone
      [/Balance account/, "\r"],
      [/Credits per reply/, "\u00152.5\r"],
      [/System prompt/, "\u0015Ты помощник.\r"],
    ]);
    const spec = await askNewBot({}, term.context);
    assert.equal(term.remaining, 0);
    assert.deepEqual(
      { ...spec },
      {
        name: "shop-vk",
        channel: "vk",
        model: "gpt-4o-mini",
        apiKeyVar: "OPENAI_API_KEY",
        baseUrl: "http://127.0.0.1:8000/v1",
        timezone: "Asia/Tokyo",
        tokenVar: "SHOP_VK_TOKEN",
        vkGroupId: 1,
        vkConfirmationVar: "SHOP_VK_CONFIRMATION",
        vkSecretVar: "MY_SECRET",
        dgisLoginVar: "SHOP_VK_LOGIN",
        dgisPasswordVar: "SHOP_VK_PASSWORD",
        branchIds: undefined,
        account: "default",
        cost: 2.5,
        promptText: "Ты помощник.",
      },
    );
    assert.match(renderBotYaml(spec), /group_id: 1\n/);
  });

  test("through bin/bots.js from a fresh folder", async () => {
    const fx = new Fixture();
    try {
      // The machine's zone is the default (TZ sets it for Intl).
      const r = await bin(["init", "--yes", "--name", "first-bot"], { TZ: "America/Sao_Paulo" }, fx.root);
      assert.equal(r.code, 0, r.stderr);
      assert.match(readFileSync(path.join(fx.root, "configs/first-bot.yaml"), "utf8"), /\ntimezone: America\/Sao_Paulo\n/);
      assert.match(r.stdout, /first-bot OK/);
      assert.equal(readFileSync(path.join(fx.root, ".env"), "utf8"), "# first-bot (tg), written by bots init\nOPENAI_API_KEY=\nFIRST_BOT_TOKEN=\n");
      assert.equal(statSync(path.join(fx.root, ".env")).mode & 0o777, 0o600, "a new .env is private");
      // A second bot: the key the operator filled in stays; only the new token is added.
      fx.write(".env", readFileSync(path.join(fx.root, ".env"), "utf8").replace("OPENAI_API_KEY=", "OPENAI_API_KEY=sk-filled-in-123"));
      const second = await bin(["init", "--yes", "--name", "second-bot"], {}, fx.root);
      assert.equal(second.code, 0, second.stderr);
      assert.equal(
        readFileSync(path.join(fx.root, ".env"), "utf8"),
        "# first-bot (tg), written by bots init\nOPENAI_API_KEY=sk-filled-in-123\nFIRST_BOT_TOKEN=\n\n# second-bot (tg), written by bots init\nSECOND_BOT_TOKEN=\n",
      );
      const help = await bin(["init", "--help"]);
      assert.match(help.stdout, /bots init --yes --channel tg --name shop-tg/);
    } finally {
      fx.cleanup();
    }
  });
});
