import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { ConfigError } from "../errors.js";

/**
 * Reads the env file (dotenv syntax) and merges it under the process environment: a variable
 * set in the environment wins over the file, as with dotenv itself.
 * @param envFile explicit file (must exist) or undefined for `./.env` if present
 * @throws ConfigError when an explicitly named file does not exist
 */
export function loadEnv(envFile: string | undefined, processEnv: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const file = envFile ?? ".env";
  let fromFile: Record<string, string> = {};
  // dotenv (and the node:crypto it loads) only when there is a file to parse: most commands run
  // without one in a shell that exports the variables. Required synchronously from node_modules.
  if (existsSync(file)) fromFile = (createRequire(import.meta.url)("dotenv") as typeof import("dotenv")).parse(readFileSync(file));
  else if (envFile) throw new ConfigError("ENV_FILE_MISSING", `env file ${envFile} does not exist`, { hint: "check --env-file" });
  const env: Record<string, string> = { ...fromFile };
  for (const [k, v] of Object.entries(processEnv)) if (v !== undefined) env[k] = v;
  return env;
}
