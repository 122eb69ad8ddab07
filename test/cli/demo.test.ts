import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import { openStore } from "../../src/storage/index.js";
import { finished, REPO, runBots } from "../support/cli.js";
import { eventually } from "../support/harness.js";
import { freePort } from "../support/telegram.js";

const LABEL = "[demo model: quotes the bot's prompt, no AI]";

/** An empty working directory and an empty TMPDIR, to see what a run leaves behind. */
function folders(): { cwd: string; tmp: string; cleanup(): void } {
  const base = mkdtempSync(path.join(os.tmpdir(), "bots-demo-test-"));
  const cwd = path.join(base, "cwd");
  const tmp = path.join(base, "tmp");
  mkdirSync(cwd);
  mkdirSync(tmp);
  return { cwd, tmp, cleanup: () => rmSync(base, { recursive: true, force: true }) };
}

describe("bots demo", () => {
  test("answers a scripted conversation from stdin through the real pipeline (commands free, answers charged) and leaves nothing behind", async () => {
    const f = folders();
    try {
      const r = await runBots(["demo"], { cwd: f.cwd, env: { TMPDIR: f.tmp }, input: "Hello\n/start\n\nСколько стоит доставка?\n", timeoutMs: 120_000 });
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.split("\n");
      assert.deepEqual(
        lines.filter((l) => l.startsWith("you> ")),
        ["you> Hello", "you> /start", "you> Сколько стоит доставка?"],
      );
      const answers = lines.filter((l) => l.startsWith("shop-tg> "));
      assert.equal(answers.length, 3, r.stdout);
      assert.ok(answers[0]!.startsWith(`shop-tg> ${LABEL} `), answers[0]);
      // /start is a command (bot_command entity): tg.commands.start, free, never the model.
      assert.equal(answers[1], "shop-tg> Здравствуйте! Я помощник магазина. Спросите о товарах, доставке или оплате.");
      assert.equal(answers[2], `shop-tg> ${LABEL} Доставка по городу — 300 ₽, бесплатно от 3000 ₽.`);
      assert.deepEqual(
        lines.filter((l) => l.startsWith("  (")),
        ["  (charged 5.00 · balance 95.00)", "  (a command: free · balance 95.00)", "  (charged 5.00 · balance 90.00)"],
      );
      // The other-terminal commands name the demo database.
      assert.match(r.stderr, /bots --db sqlite:\S+\/bots\.db --config-dir \S+ balance/);
      assert.deepEqual(readdirSync(f.tmp), [], "the temporary folder is removed");
      assert.deepEqual(readdirSync(f.cwd), [], "nothing is written in the working directory");
    } finally {
      f.cleanup();
    }
  });

  test("--keep DIR keeps the database: recorded and charged messages, the ledger sums to the balance; a second run reuses it with an edited config", async () => {
    const f = folders();
    const dir = path.join(f.cwd, "kept");
    try {
      const r = await runBots(["demo", "--keep", "kept"], {
        cwd: f.cwd,
        env: { TMPDIR: f.tmp },
        input: "Можно оплатить картой?\nЕсть доставка?\n",
        timeoutMs: 120_000,
      });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /shop-tg> .*Оплата картой или при получении\./);
      assert.deepEqual(readdirSync(dir).sort(), ["bots.db", "configs", "logs", "prompts"]);
      // The kept config is used as edited: 45.00 an answer leaves 90.00 enough for two.
      const config = path.join(dir, "configs/shop-tg.yaml");
      writeFileSync(config, readFileSync(config, "utf8").replace("cost_per_reply: 5,", "cost_per_reply: 45,"));
      const again = await runBots(["demo", "--keep", dir], {
        cwd: f.cwd,
        env: { TMPDIR: f.tmp },
        input: "Сколько стоит доставка?\nА самовывоз?\nЕщё вопрос",
        timeoutMs: 120_000,
      });
      assert.equal(again.code, 0, again.stderr);
      assert.deepEqual(
        again.stdout.split("\n").filter((l) => l.startsWith("  (")),
        [
          "  (charged 45.00 · balance 45.00)",
          "  (charged 45.00 · balance 0.00)",
          `  (no answer: the balance cannot pay; top up with bots --db sqlite:${dir}/bots.db --config-dir ${dir}/configs balance add 100 · balance 0.00)`,
        ],
        "no second top-up",
      );
      const store = await openStore(`sqlite:${path.join(dir, "bots.db")}`);
      try {
        const rows = await store.database.db.selectFrom("messages").select(["direction", "status", "text"]).orderBy("id").execute();
        assert.deepEqual(
          rows.filter((m) => m.direction === "in").map((m) => [m.status, m.text]),
          [
            ["answered", "Можно оплатить картой?"],
            ["answered", "Есть доставка?"],
            ["answered", "Сколько стоит доставка?"],
            ["answered", "А самовывоз?"],
            ["no_balance", "Ещё вопрос"],
          ],
        );
        assert.equal((await store.balance.get("default"))!.balance, 0);
        assert.equal(await store.balance.ledgerSum("default"), 0);
      } finally {
        await store.close();
      }
      const balance = await runBots(["--db", `sqlite:${path.join(dir, "bots.db")}`, "--json", "balance"], { cwd: f.cwd });
      assert.equal((JSON.parse(balance.stdout) as { accounts: Array<{ balance: string }> }).accounts[0]!.balance, "0.00");
      assert.deepEqual(readdirSync(f.tmp), []);
    } finally {
      f.cleanup();
    }
  });
});

describe("scripts/emulator.ts", () => {
  test("a typed /start reaches the bot with a bot_command entity, plain text without one", async () => {
    const port = await freePort();
    const token = "123456:emulator-test";
    const child = spawn(process.execPath, ["--import", "tsx", path.join(REPO, "scripts/emulator.ts")], {
      cwd: REPO,
      env: { ...process.env, TG_PORT: String(port), TG_TOKEN: token },
      stdio: ["pipe", "pipe", "pipe"],
    });
    const out = { stdout: "", stderr: "" };
    child.stdout.on("data", (d) => (out.stdout += String(d)));
    child.stderr.on("data", (d) => (out.stderr += String(d)));
    try {
      await eventually(() => out.stdout.includes("Type a message"), 30_000, "emulator ready");
      child.stdin.write("/start\nhello /start\n");
      type Update = { update_id: number; message: { text: string; entities?: Array<{ type: string; offset: number; length: number }> } };
      // telegram-test-api forgets what one getUpdates returned: keep every update seen.
      const seen: Update[] = [];
      const updates = (await eventually(
        async () => {
          const res = await fetch(`http://127.0.0.1:${port}/bot${token}/getUpdates`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: "{}",
          });
          const body = (await res.json()) as { result: Update[] };
          for (const u of body.result) if (!seen.some((s) => s.update_id === u.update_id)) seen.push(u);
          return seen.length >= 2 ? seen.sort((a, b) => a.update_id - b.update_id) : null;
        },
        10_000,
        "two updates",
      ))!;
      assert.equal(updates[0]!.message.text, "/start");
      assert.deepEqual(updates[0]!.message.entities, [{ type: "bot_command", offset: 0, length: 6 }]);
      assert.equal(updates[1]!.message.text, "hello /start");
      assert.equal(updates[1]!.message.entities, undefined);
    } finally {
      child.kill("SIGINT");
      await finished(child as never, 10_000);
    }
  });
});
