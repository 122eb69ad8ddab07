// Bundles the CLI's start-up path into a few ES modules (dist/bundle/) so `bots --help` and
// `bots balance` do not resolve and compile hundreds of small files (Kysely, zod, yaml):
// loading them as separate modules cost about 300 ms of the 450 ms `bots balance` took.
// Dynamic imports stay lazy (code splitting); native and heavy channel libraries stay external.
import { build } from "esbuild";

await build({
  entryPoints: { main: "src/cli/main.ts" },
  outdir: "dist/bundle",
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  sourcemap: true,
  logLevel: "warning",
  // Libraries with native addons, worker files or their own lazy loading are used from node_modules.
  external: ["better-sqlite3", "mysql2", "telegraf", "vk-io", "openai", "pino", "ws", "nodemailer", "@inquirer/prompts", "telegram-test-api", "smtp-server", "prom-client"],
  banner: { js: "import { createRequire as __bots_createRequire } from 'node:module'; const require = __bots_createRequire(import.meta.url);" },
});
