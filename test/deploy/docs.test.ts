import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { promisify } from "node:util";
import { REPO } from "../support/cli.js";

/** README, docs/*.md, deploy units, example configs and the CLI's help source, with their text. */
function documents(): Array<[string, string]> {
  const files = [
    "README.md",
    ...readdirSync(path.join(REPO, "docs")).map((f) => `docs/${f}`),
    ...readdirSync(path.join(REPO, "deploy/systemd")).map((f) => `deploy/systemd/${f}`),
    ...readdirSync(path.join(REPO, "configs/examples")).map((f) => `configs/examples/${f}`),
    "src/cli/program.ts",
  ];
  return files.map((f) => [f, readFileSync(path.join(REPO, f), "utf8")]);
}

describe("no documented command resolves `bots` through the npm registry", () => {
  test("the package has a scoped name of ours; its program is still `bots`", () => {
    const pkg = JSON.parse(readFileSync(path.join(REPO, "package.json"), "utf8")) as { name: string; bin: Record<string, string> };
    assert.equal(pkg.name, "@bots-cli/bots");
    assert.deepEqual(pkg.bin, { bots: "bin/bots.js" });
    const lock = JSON.parse(readFileSync(path.join(REPO, "package-lock.json"), "utf8")) as { name: string; packages: Record<string, { name?: string }> };
    assert.equal(lock.name, pkg.name);
    assert.equal(lock.packages[""]!.name, pkg.name);
  });

  test("cron lines and systemd units call the installed program by its absolute path", () => {
    let seen = 0;
    for (const [file, text] of documents()) {
      text.split("\n").forEach((line, i) => {
        if (!/(\/srv\/bots &&|ExecStart=|\* \* \*.*\bbots\b)/.test(line) || !/\bbots (start|poll|report|config|balance|db)\b/.test(line)) return;
        seen++;
        assert.match(line, /\/usr\/local\/bin\/bots (start|poll|report|config|balance|db)/, `${file}:${i + 1}: ${line.trim()}`);
      });
      // npx resolves the package's own bin only inside the checkout: the README's first block and
      // its note on the checkout are the only places that may say it.
      text.split("\n").forEach((line, i) => {
        if (line.includes("npx bots"))
          assert.ok(file === "README.md" && (line === "npm ci && npx bots demo" || /checkout/.test(line)), `${file}:${i + 1}: ${line.trim()}`);
      });
    }
    assert.ok(seen >= 6, `found ${seen} cron/systemd lines`);
  });

  test("in the checkout `npx bots` runs the checkout's own program, without the registry", async () => {
    const r = await promisify(execFile)("npx", ["--offline", "bots", "--version"], { cwd: path.join(REPO, "docs"), timeout: 60_000 });
    assert.equal(r.stdout.trim(), "0.1.0");
  });
});
