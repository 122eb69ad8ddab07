import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { isTimeZone, type ChannelName } from "./schema.js";
import { UsageError } from "../errors.js";

/** What `bots init` asks for. Variable names only: secrets never go into files it writes. */
export interface NewBotSpec {
  /** `[a-z0-9-]+`, also the file names `configs/NAME.yaml` and `prompts/NAME.md`. */
  name: string;
  channel: ChannelName;
  model: string;
  /** Variable holding the model API key. @defaultValue OPENAI_API_KEY */
  apiKeyVar: string;
  /** OpenAI-compatible endpoint written as is (not a secret), or undefined for the SDK default. */
  baseUrl?: string;
  /** IANA time zone of `{{now}}`, reports and schedules. @defaultValue the machine's (Intl) */
  timezone: string;
  /** tg: the bot token variable; vk: the community token variable; 2gis: unused. */
  tokenVar: string;
  /** vk: the community id (`group_id`). */
  vkGroupId?: number;
  /** vk: variables of the Callback API confirmation string and secret. */
  vkConfirmationVar?: string;
  vkSecretVar?: string;
  /** 2gis: variables of the cabinet login and password; branch ids. */
  dgisLoginVar?: string;
  dgisPasswordVar?: string;
  branchIds?: string[];
  /** Balance account. @defaultValue default */
  account: string;
  /** Credits per reply, at most two decimals. */
  cost: number;
  /** The system prompt written to `prompts/NAME.md`. */
  promptText: string;
}

/** Default system prompt of a new bot. */
export const DEFAULT_PROMPT = "Ты — вежливый помощник компании {{bot_name}}. Отвечай кратко и по делу, на языке собеседника.\nСейчас {{now}}.\n";

const VAR_NAME = /^[A-Z_][A-Z0-9_]*$/;

/** `shop-tg` → `SHOP_TG`: the stem of a bot's default variable names. */
export function varStem(name: string): string {
  return name.toUpperCase().replace(/[^A-Z0-9]+/g, "_");
}

/**
 * Checks a spec the way the config schema will, with messages naming the command-line flag.
 * @throws UsageError (exit 2) for the first problem
 */
export function validateSpec(s: NewBotSpec): void {
  const fail = (flag: string, message: string, hint?: string): never => {
    throw new UsageError("INIT_INVALID", `${flag}: ${message}`, { hint });
  };
  if (!/^[a-z0-9-]+$/.test(s.name) || s.name.length > 64) fail("--name", `'${s.name}' is not a bot name`, "lowercase letters, digits and '-' (e.g. shop-tg)");
  if (!["tg", "vk", "2gis"].includes(s.channel)) fail("--channel", `'${s.channel}' is not a channel`, "tg, vk or 2gis");
  if (!s.model.trim()) fail("--model", "is empty");
  for (const [flag, v] of [
    ["--api-key-var", s.apiKeyVar],
    ["--token-var", s.tokenVar],
    ["--confirmation-var", s.vkConfirmationVar],
    ["--secret-var", s.vkSecretVar],
    ["--login-var", s.dgisLoginVar],
    ["--password-var", s.dgisPasswordVar],
  ] as const) {
    if (v !== undefined && !VAR_NAME.test(v)) fail(flag, `'${v}' is not an environment variable name`, "UPPER_CASE letters, digits and '_'");
  }
  if (s.baseUrl !== undefined && !/^https?:\/\/[^\s]+$/.test(s.baseUrl)) fail("--base-url", `'${s.baseUrl}' is not an http(s) URL`);
  if (!isTimeZone(s.timezone)) fail("--timezone", `'${s.timezone}' is not an IANA time zone`, "e.g. Europe/Moscow, Asia/Novosibirsk or UTC");
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(s.account)) fail("--account", `'${s.account}' is not an account name`, "letters, digits, '_', '.', '-' (1-64)");
  if (!Number.isFinite(s.cost) || s.cost < 0 || Math.abs(s.cost * 100 - Math.round(s.cost * 100)) > 1e-6)
    fail("--cost", `'${s.cost}' is not an amount of credits`, "e.g. 5 or 2.50");
  if (s.channel === "vk" && !(Number.isInteger(s.vkGroupId) && s.vkGroupId! > 0))
    fail("--group-id", "the VK community id is required for channel vk", "the number in the community's address or settings");
  if (s.channel === "2gis" && !(s.branchIds?.length && s.branchIds.every((b) => /^\d+$/.test(b))))
    fail("--branch-id", "one or more numeric 2GIS branch ids are required for channel 2gis");
  if (!s.promptText.trim()) fail("--prompt-text", "is empty");
}

/** The environment variables the new bot's config refers to, in order. */
export function envVarsOf(s: NewBotSpec): string[] {
  const vars = [s.apiKeyVar];
  if (s.channel === "tg" || s.channel === "vk") vars.push(s.tokenVar);
  if (s.channel === "vk") vars.push(s.vkConfirmationVar!, s.vkSecretVar!);
  if (s.channel === "2gis") vars.push(s.dgisLoginVar!, s.dgisPasswordVar!);
  return vars.filter((v, i) => vars.indexOf(v) === i);
}

/** The bot YAML (README, "Configuration") for a spec, with every secret as `${VAR}`. */
export function renderBotYaml(s: NewBotSpec): string {
  const lines = [
    `# Bot ${s.name}, written by \`bots init\`. Secrets come from the environment or .env.`,
    `name: ${s.name}`,
    `channel: ${s.channel}`,
    "enabled: true",
    `timezone: ${s.timezone}`,
    `prompt: prompts/${s.name}.md`,
    "llm:",
    `  model: ${JSON.stringify(s.model)}`,
    `  api_key: \${${s.apiKeyVar}}`,
    ...(s.baseUrl ? [`  base_url: ${s.baseUrl}`] : []),
    "balance:",
    `  account: ${s.account}`,
    `  cost_per_reply: ${s.cost}`,
  ];
  if (s.channel === "tg") lines.push("tg:", `  token: \${${s.tokenVar}}`);
  if (s.channel === "vk") {
    lines.push(
      "vk:",
      `  token: \${${s.tokenVar}}`,
      `  group_id: ${s.vkGroupId}`,
      "  mode: callback",
      "  callback:",
      `    confirmation: \${${s.vkConfirmationVar}}`,
      `    secret: \${${s.vkSecretVar}}`,
    );
  }
  if (s.channel === "2gis")
    lines.push(
      "2gis:",
      `  login: \${${s.dgisLoginVar}}`,
      `  password: \${${s.dgisPasswordVar}}`,
      `  branch_ids: [${s.branchIds!.map((b) => JSON.stringify(b)).join(", ")}]`,
    );
  return `${lines.join("\n")}\n`;
}

/** The machine's IANA time zone (Intl), or UTC when it has none. */
export function machineTimeZone(): string {
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
  return tz && isTimeZone(tz) ? tz : "UTC";
}

/** What {@link writeNewBot} wrote. */
export interface InitResult {
  configFile: string;
  promptFile: string;
  /** The env file the variables went to. */
  envFile: string;
  /** Variable names appended to the env file, empty (those already there, set or not, are kept as they are). */
  addedVars: string[];
}

/** The files `bots init` would write for a bot, and which of them exist. */
export function initTargets(configDir: string, name: string): { configFile: string; promptFile: string; existing: string[] } {
  const root = path.resolve(configDir, "..");
  const configFile = path.join(configDir, `${name}.yaml`);
  const promptFile = path.join(root, "prompts", `${name}.md`);
  return { configFile, promptFile, existing: [configFile, promptFile].filter((f) => existsSync(f)) };
}

/**
 * Writes `configs/NAME.yaml` and `prompts/NAME.md` (the prompts folder beside the config dir, as
 * the loader resolves it) and appends the bot's variable names that `envFile` does not mention
 * yet, with empty values, to it (created with mode 0600). A line already there is never changed.
 * @param envFile the env file the CLI reads (`--env-file`, default `./.env`)
 * @throws UsageError (exit 2) when a file exists and `overwrite` is not set, or the spec is invalid
 */
export function writeNewBot(configDir: string, spec: NewBotSpec, opts: { overwrite?: boolean; envFile: string }): InitResult {
  validateSpec(spec);
  const t = initTargets(configDir, spec.name);
  if (t.existing.length && !opts.overwrite)
    throw new UsageError("INIT_EXISTS", `${t.existing.join(" and ")} already exist${t.existing.length === 1 ? "s" : ""}`, {
      hint: "choose another --name, or pass --force to overwrite",
    });
  mkdirSync(path.dirname(t.configFile), { recursive: true });
  mkdirSync(path.dirname(t.promptFile), { recursive: true });
  writeFileSync(t.configFile, renderBotYaml(spec));
  writeFileSync(t.promptFile, spec.promptText.endsWith("\n") ? spec.promptText : `${spec.promptText}\n`);
  const envFile = path.resolve(opts.envFile);
  const existing = existsSync(envFile) ? readFileSync(envFile, "utf8") : "";
  const have = new Set(
    existing
      .split("\n")
      .map((l) => /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=/.exec(l)?.[1])
      .filter(Boolean),
  );
  const added = envVarsOf(spec).filter((v) => !have.has(v));
  // Appending only: a value the operator put there is never rewritten or lost.
  if (added.length)
    appendFileSync(
      envFile,
      `${existing && !existing.endsWith("\n") ? "\n" : ""}${existing ? "\n" : ""}# ${spec.name} (${spec.channel}), written by bots init\n${added.map((v) => `${v}=`).join("\n")}\n`,
      { mode: 0o600 },
    );
  return { configFile: t.configFile, promptFile: t.promptFile, envFile, addedVars: added };
}

/**
 * Stand-in values that pass the schema for variables not set yet, so the config check after
 * `bots init` checks the file's structure; the operator still has to set the real ones.
 */
export function placeholderEnv(spec: NewBotSpec, env: Record<string, string>): { env: Record<string, string>; missing: string[] } {
  const missing = envVarsOf(spec).filter((v) => env[v] === undefined || env[v] === "");
  const filled = { ...env };
  for (const v of missing) filled[v] = spec.channel === "tg" && v === spec.tokenVar ? "123456:placeholder-token" : "placeholder";
  return { env: filled, missing };
}
