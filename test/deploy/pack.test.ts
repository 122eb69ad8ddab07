import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import { promisify } from "node:util";
import { REPO } from "../support/cli.js";

const run = promisify(execFile);

/**
 * The packaged install, end to end: `npm pack`, then `npm install -g --prefix TMP bots-cli-bots-*.tgz` as
 * an operator would on a server (dependencies from the npm registry; better-sqlite3 builds), then
 * the installed `bots`. A file missing from `files` or a dev-only import fails here.
 * Bounded: 10 minutes for the install.
 */
/** Paths `npm pack` would put in the tarball (read from the dry run; no build). */
async function packedPaths(): Promise<{ name: string; filename: string; files: string[] }> {
  const r = await run("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: REPO, timeout: 120_000 });
  const [info] = JSON.parse(r.stdout) as Array<{ name: string; filename: string; files: Array<{ path: string }> }>;
  return { name: info!.name, filename: info!.filename, files: info!.files.map((f) => f.path) };
}

describe("package contents", () => {
  test("the tarball carries docs/ and deploy/ that its README points to", async () => {
    const { files } = await packedPaths();
    for (const f of [
      "README.md",
      "bin/bots.js",
      "configs/examples/shop-tg.yaml",
      "prompts/shop.md",
      "docs/2gis.md",
      "docs/durability.md",
      "deploy/systemd/bots.service",
      "deploy/systemd/bots-poll-2gis.timer",
    ])
      assert.ok(files.includes(f), `${f} is packaged`);
    // Every docs/ and deploy/ path the README names is in the tarball.
    const readme = readFileSync(path.join(REPO, "README.md"), "utf8");
    // Prompts: only those of the examples; a bot's prompt written by `bots init` in a checkout is not shipped.
    const pkg = JSON.parse(readFileSync(path.join(REPO, "package.json"), "utf8")) as { files: string[] };
    assert.ok(!pkg.files.includes("prompts"), "files lists the example prompts, not the folder");
    const referenced = new Set<string>();
    for (const f of readdirSync(path.join(REPO, "configs/examples")))
      for (const m of readFileSync(path.join(REPO, "configs/examples", f), "utf8").matchAll(/(prompts\/[\w-]+\.md)/g)) referenced.add(m[1]!);
    assert.deepEqual(files.filter((f) => f.startsWith("prompts/")).sort(), [...referenced].sort());
    for (const m of readme.matchAll(/\b((?:docs|deploy)\/[\w./-]*\w)/g))
      assert.ok(
        files.some((f) => f.startsWith(m[1]!)),
        `README names ${m[1]}: packaged`,
      );
  });
});

describe("packaged install", () => {
  test("npm pack → npm install -g --prefix: bots --help, config check on the packaged examples, bots balance", { timeout: 900_000 }, async () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), "bots-pack-"));
    try {
      const packed = await run("npm", ["pack", REPO, "--pack-destination", tmp, "--silent"], { cwd: tmp, timeout: 180_000 });
      const tgz = packed.stdout.trim().split("\n").pop()!;
      assert.match(tgz, /^bots-cli-bots-.*\.tgz$/);
      const prefix = path.join(tmp, "prefix");
      await run("npm", ["install", "-g", "--prefix", prefix, "--no-audit", "--no-fund", path.join(tmp, tgz)], { cwd: tmp, timeout: 600_000 });
      const bots = path.join(prefix, "bin", "bots");
      const pkg = path.join(prefix, "lib", "node_modules", "@bots-cli", "bots");
      // Nothing of the development tree came along.
      for (const f of ["src", "test", "bench", "tsconfig.json"]) assert.ok(!readdirSync(pkg).includes(f), `${f} is not packaged`);
      for (const f of ["docs", "deploy"]) assert.ok(readdirSync(pkg).includes(f), `${f} is packaged`);
      for (const dev of ["typescript", "tsx", "esbuild", "telegram-test-api", "smtp-server"])
        assert.ok(!readdirSync(path.join(pkg, "node_modules")).includes(dev), `${dev} (a dev dependency) was not installed`);

      const work = path.join(tmp, "site");
      mkdirSync(work);
      const env = { PATH: `${path.dirname(process.execPath)}:/usr/bin:/bin`, HOME: tmp, NO_COLOR: "1" };
      const help = await run(bots, ["--help"], { cwd: work, env, timeout: 30_000 });
      assert.match(help.stdout, /Usage: bots/);
      assert.match(help.stdout, /dialogs/);

      cpSync(path.join(pkg, "configs", "examples"), path.join(work, "configs"), { recursive: true });
      cpSync(path.join(pkg, "prompts"), path.join(work, "prompts"), { recursive: true });
      const vars = new Set<string>();
      for (const f of readdirSync(path.join(work, "configs")))
        for (const m of readFileSync(path.join(work, "configs", f), "utf8").matchAll(/\$\{([A-Z0-9_]+)(?::-[^}]*)?\}/g)) vars.add(m[1]!);
      // Plausible values of the shapes the schema checks (tokens, ids, addresses).
      const secretValue = (v: string): string => {
        if (/TOKEN$/.test(v) && !v.startsWith("VK") && !v.startsWith("WS")) return "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11";
        if (/GROUP_ID$|PORT$/.test(v)) return "123";
        if (/(TO|EMAIL|FROM)$/.test(v)) return "ops@example.com";
        if (/URL$|ROOT$/.test(v)) return "http://127.0.0.1:9";
        if (/HOST$/.test(v)) return "127.0.0.1";
        return `value-of-${v.toLowerCase()}`;
      };
      const secrets = Object.fromEntries([...vars].map((v) => [v, secretValue(v)]));
      const check = await run(bots, ["config", "check"], { cwd: work, env: { ...env, ...secrets }, timeout: 30_000 }).catch(
        (e: { stdout: string; stderr: string; code: number }) => e,
      );
      assert.equal((check as { code?: number }).code ?? 0, 0, `${check.stdout}\n${check.stderr}`);

      const balance = await run(bots, ["--db", `sqlite:${path.join(work, "data", "bots.db")}`, "balance", "add", "500", "--yes"], {
        cwd: work,
        env,
        timeout: 30_000,
      });
      assert.match(balance.stdout + balance.stderr, /500\.00/);
      const show = await run(bots, ["--db", `sqlite:${path.join(work, "data", "bots.db")}`, "balance", "--json"], { cwd: work, env, timeout: 30_000 });
      assert.equal((JSON.parse(show.stdout) as { accounts: Array<{ balance: string }> }).accounts[0]!.balance, "500.00");

      // The demo runs from the installed package alone (its own Bot API; no dev dependency).
      const demo = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = spawn(bots, ["demo"], { cwd: work, env, stdio: ["pipe", "pipe", "pipe"] });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d) => (stdout += String(d)));
        child.stderr.on("data", (d) => (stderr += String(d)));
        const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
        child.on("exit", (code) => {
          clearTimeout(timer);
          setImmediate(() => resolve({ code, stdout, stderr }));
        });
        child.stdin.end("Сколько стоит доставка?\n");
      });
      assert.equal(demo.code, 0, demo.stderr);
      assert.match(demo.stdout, /shop-tg> \[demo model: .*\] Доставка по городу — 300 ₽/);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
