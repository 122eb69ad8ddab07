// Bundles the CLI's start-up path into a few ES modules (dist/bundle/) so `bots --help` and
// `bots balance` do not resolve and compile hundreds of small files (Kysely, zod, yaml):
// loading them as separate modules cost about 300 ms of the 450 ms `bots balance` took.
// Dynamic imports stay lazy (code splitting); native and heavy channel libraries stay external.
import { execFileSync } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { build } from "esbuild";

/**
 * commander requires node:child_process at load time for "executable" subcommands (a separate
 * program per subcommand), which `bots` never declares; loading it cost every start, `--help`
 * included, a few ms. commander gets a stand-in that fails loudly if ever used.
 */
const commanderWithoutChildProcess = {
  name: "commander-without-child-process",
  setup(b) {
    b.onResolve({ filter: /^(node:)?child_process$/ }, (args) =>
      /[\\/]node_modules[\\/]commander[\\/]/.test(args.importer) ? { path: "child_process", namespace: "commander-stub" } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: "commander-stub" }, () => ({
      contents: "module.exports = { spawn() { throw new Error('bots declares no executable subcommands'); } };",
      loader: "js",
    }));
  },
};

// Chunk names carry content hashes: start empty so old chunks do not pile up (or get packed).
rmSync("dist/bundle", { recursive: true, force: true });

await build({
  entryPoints: { main: "src/cli/main.ts" },
  outdir: "dist/bundle",
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  sourcemap: true,
  // Whitespace and comments out (a third of Kysely's bytes are JSDoc): less to read, decode and
  // compile at every start. Identifiers are kept: error classes report their own names.
  minifyWhitespace: true,
  minifySyntax: true,
  logLevel: "warning",
  // Libraries with native addons, worker files or their own lazy loading are used from node_modules.
  // better-sqlite3's JavaScript is bundled (a dozen small CommonJS files cost SQLite commands
  // several ms to load); src/storage/db.ts hands it the path of its addon, so `bindings` (which
  // would look for the addon next to the bundle) stays unloaded.
  external: [
    "bindings",
    "mysql2",
    "telegraf",
    "vk-io",
    "openai",
    "node-fetch",
    "pino",
    "ws",
    "nodemailer",
    "@inquirer/prompts",
    "telegram-test-api",
    "smtp-server",
    "prom-client",
  ],
  plugins: [commanderWithoutChildProcess],
  banner: { js: "import { createRequire as __bots_createRequire } from 'node:module'; const require = __bots_createRequire(import.meta.url);" },
});

/**
 * `bots`, `bots --help` and `bots --version` depend on nothing but the program's definitions
 * (src/cli/program.ts): their output is recorded here by running the bundle, and bin/bots.js
 * prints it without loading the bundle. Recorded through a pipe (not a terminal), so commander
 * wraps the help at its default width of 80 columns, in an empty folder with an empty environment.
 */
const RECORDED = ["", "--help", "-h", "help", "-V", "--version"];
const outputs = {};
for (const args of RECORDED) {
  let stdout;
  let code = 0;
  try {
    stdout = execFileSync(process.execPath, [path.resolve("dist/bundle/main.js"), ...(args ? [args] : [])], {
      cwd: os.tmpdir(),
      env: {},
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
  } catch (error) {
    if (typeof error.status !== "number" || error.stderr) throw error;
    stdout = error.stdout;
    code = error.status;
  }
  outputs[args] = { stdout, stderr: "", code };
}
writeFileSync("dist/bundle/static-output.json", `${JSON.stringify({ width: 80, outputs })}\n`);
