import path from "node:path";
import chalk from "chalk";
import { loadEnv } from "../config/env.js";
import { DEFAULT_DATABASE_URL } from "../storage/url.js";

/** Global options (README, "Commands") as commander parsed them. */
export interface GlobalOptions {
  configDir?: string;
  envFile?: string;
  db?: string;
  logDir?: string;
  json?: boolean;
  color?: boolean;
  verbose?: boolean;
}

/** Resolved settings every command works with. */
export interface CliContext {
  configDir: string;
  /** Environment merged with the env file (the environment wins). */
  env: Record<string, string>;
  dbUrl: string;
  logDir: string;
  json: boolean;
  color: boolean;
  verbose: boolean;
  /** Whether stdin and stdout are terminals (confirmations, progress). */
  interactive: boolean;
  out: (line: string) => void;
  err: (line: string) => void;
}

/** Streams a command writes to; tests capture them. */
export interface CliIo {
  stdout: { write(s: string): unknown; isTTY?: boolean };
  stderr: { write(s: string): unknown; isTTY?: boolean };
  stdinIsTTY?: boolean;
  env?: NodeJS.ProcessEnv;
}

/**
 * Resolves global options: `--config-dir` (env `BOTS_CONFIG_DIR`, default `./configs`),
 * `--env-file` (default `.env` if present), `--db` (env `DATABASE_URL`, default
 * `sqlite:data/bots.db`), `--log-dir` (default `./logs`), `--json`, `--no-color` (and `NO_COLOR`).
 * @throws ConfigError when an explicit env file is missing
 */
export function resolveContext(opts: GlobalOptions, io: CliIo): CliContext {
  const env = loadEnv(opts.envFile, io.env ?? process.env);
  const color = opts.color !== false && !("NO_COLOR" in env) && chalk.level > 0;
  if (!color) chalk.level = 0;
  return {
    configDir: path.resolve(opts.configDir ?? env.BOTS_CONFIG_DIR ?? "configs"),
    env,
    dbUrl: opts.db ?? env.DATABASE_URL ?? DEFAULT_DATABASE_URL,
    logDir: path.resolve(opts.logDir ?? env.BOTS_LOG_DIR ?? "logs"),
    json: opts.json === true,
    color,
    verbose: opts.verbose === true,
    interactive: Boolean(io.stdout.isTTY && io.stdinIsTTY),
    out: (line) => void io.stdout.write(`${line}\n`),
    err: (line) => void io.stderr.write(`${line}\n`),
  };
}
