import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { askNewBot } from "../../src/cli/init.js";
import { renderBotYaml } from "../../src/config/init.js";
import { loadBotConfigs } from "../../src/config/load.js";
import { ScriptedTerminal } from "../support/terminal.js";
import { bin, cli } from "../support/cli.js";
import { Fixture } from "../support/fixture.js";

describe("bots init", () => {
  test("with flags writes a config and prompt that pass the check, and variable names without values", async () => {
    const fx = new Fixture();
    try {
      fx.write(".env.example", "OPENAI_API_KEY=\n");
      const r = await cli(["--config-dir", fx.configDir, "init", "--yes", "--channel", "tg", "--name", "shop-tg", "--model", "gpt-4o-mini", "--cost", "2.50", "--account", "client-a", "--prompt-text", "Ты помощник магазина {{bot_name}}."], {});
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /wrote .*configs\/shop-tg\.yaml\nwrote .*prompts\/shop-tg\.md\nadded SHOP_TG_TOKEN to .*\.env\.example/);
      assert.match(r.stdout, /shop-tg +tg +yes +gpt-4o-mini +client-a\nshop-tg OK/);
      assert.match(r.stdout, /Set OPENAI_API_KEY, SHOP_TG_TOKEN in \.env/);
      assert.equal(readFileSync(path.join(fx.root, "prompts/shop-tg.md"), "utf8"), "Ты помощник магазина {{bot_name}}.\n");
      assert.equal(readFileSync(path.join(fx.root, ".env.example"), "utf8"), "OPENAI_API_KEY=\n\n# shop-tg (tg)\nSHOP_TG_TOKEN=\n");
      const yaml = readFileSync(path.join(fx.configDir, "shop-tg.yaml"), "utf8");
      assert.match(yaml, /api_key: \$\{OPENAI_API_KEY\}/);
      assert.match(yaml, /token: \$\{SHOP_TG_TOKEN\}/);
      // With the real variables set the config loads with what was asked for.
      const { bots, problems } = loadBotConfigs(fx.configDir, { OPENAI_API_KEY: "sk-real-000000", SHOP_TG_TOKEN: "42:abc" });
      assert.deepEqual(problems, []);
      assert.deepEqual([bots[0]!.name, bots[0]!.channel, bots[0]!.llm.model, bots[0]!.balance.account, bots[0]!.balance.cost_per_reply], ["shop-tg", "tg", "gpt-4o-mini", "client-a", 2.5]);
      const check = await cli(["--config-dir", fx.configDir, "config", "check"], { OPENAI_API_KEY: "sk-real-000000", SHOP_TG_TOKEN: "42:abc" });
      assert.equal(check.code, 0, check.stderr);
    } finally {
      fx.cleanup();
    }
  });

  test("refuses to overwrite without --force; --force overwrites; variables are not repeated", async () => {
    const fx = new Fixture();
    try {
      const args = ["--config-dir", fx.configDir, "init", "--yes", "--name", "shop-tg"];
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
      assert.equal(readFileSync(path.join(fx.root, ".env.example"), "utf8"), "# shop-tg (tg)\nOPENAI_API_KEY=\nSHOP_TG_TOKEN=\n");
    } finally {
      fx.cleanup();
    }
  });

  test("vk and 2gis configs pass the check; bad or missing flags exit 2 and write nothing", async () => {
    const fx = new Fixture();
    try {
      const g = ["--config-dir", fx.configDir, "--json", "init", "--yes"];
      const vk = await cli([...g, "--channel", "vk", "--name", "shop-vk", "--group-id", "123456"]);
      assert.equal(vk.code, 0, vk.stderr);
      assert.deepEqual((JSON.parse(vk.stdout) as { variables_to_set: string[] }).variables_to_set, ["OPENAI_API_KEY", "SHOP_VK_TOKEN", "SHOP_VK_CONFIRMATION", "SHOP_VK_SECRET"]);
      const dg = await cli([...g, "--channel", "2gis", "--name", "shop-2gis", "--branch-id", "70000001000000001,70000001000000002"]);
      assert.equal(dg.code, 0, dg.stderr);
      const env = { OPENAI_API_KEY: "k", SHOP_VK_TOKEN: "t", SHOP_VK_CONFIRMATION: "c", SHOP_VK_SECRET: "s", SHOP_2GIS_LOGIN: "l", SHOP_2GIS_PASSWORD: "p" };
      const { bots, problems } = loadBotConfigs(fx.configDir, env);
      assert.deepEqual(problems, []);
      assert.deepEqual(bots.find((b) => b.name === "shop-2gis")!["2gis"]!.branch_ids, ["70000001000000001", "70000001000000002"]);
      assert.equal(bots.find((b) => b.name === "shop-vk")!.vk!.group_id, 123456);
      for (const bad of [["--name", "Shop TG"], ["--channel", "vk", "--name", "x-vk"], ["--name", "x", "--cost", "1.234"], ["--name", "y", "--token-var", "lower"], []]) {
        const r = await cli(["--config-dir", fx.configDir, "init", "--yes", ...bad]);
        assert.equal(r.code, 2, `${bad.join(" ")}: ${r.stderr}`);
      }
      // The check runs after writing: a name another file already uses is reported, exit 2.
      fx.bot("legacy", "name: clash\nchannel: tg\nprompt: prompts/shop-vk.md\nllm: {model: m, api_key: k}\ntg: {token: '1:a'}\n");
      const clash = await cli(["--config-dir", fx.configDir, "init", "--yes", "--name", "clash"]);
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
      [/model API key/, "\r"],
      [/community token/, "\r"],
      [/community id/, "12x\r"],
      [/a number/, "\b\b\r"], // the validator refuses "12x"; erase to "1"
      [/confirmation string/, "\r"],
      [/Callback API secret/, "MY_SECRET\r"],
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
        baseUrl: undefined,
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
      const r = await bin(["init", "--yes", "--name", "first-bot"], {}, fx.root);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(existsSync(path.join(fx.root, "configs/first-bot.yaml")));
      assert.match(r.stdout, /first-bot OK/);
      const help = await bin(["init", "--help"]);
      assert.match(help.stdout, /bots init --yes --channel tg --name shop-tg/);
    } finally {
      fx.cleanup();
    }
  });
});
