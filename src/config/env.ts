import { existsSync, readFileSync } from "node:fs";
import { parse as parseDotenv } from "dotenv";
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
  if (existsSync(file)) fromFile = parseDotenv(readFileSync(file));
  else if (envFile) throw new ConfigError("ENV_FILE_MISSING", `env file ${envFile} does not exist`, { hint: "check --env-file" });
  const env: Record<string, string> = { ...fromFile };
  for (const [k, v] of Object.entries(processEnv)) if (v !== undefined) env[k] = v;
  return env;
}
