import path from "node:path";
import chalk from "chalk";
import { DEFAULT_PROMPT, initTargets, machineTimeZone, placeholderEnv, validateSpec, varStem, writeNewBot, type NewBotSpec } from "../config/init.js";
import { isTimeZone, type ChannelName } from "../config/schema.js";
import { formatProblem, loadBotConfigs } from "../config/load.js";
import { ExitError, UsageError } from "../errors.js";
import { table } from "./shared.js";
import type { CliContext } from "./context.js";

/** Flags of `bots init` (every wizard question has one, for scripts). */
export interface InitOptions {
  channel?: string;
  name?: string;
  model?: string;
  apiKeyVar?: string;
  baseUrl?: string;
  timezone?: string;
  tokenVar?: string;
  groupId?: string;
  confirmationVar?: string;
  secretVar?: string;
  loginVar?: string;
  passwordVar?: string;
  branchId?: string[];
  account?: string;
  cost?: string;
  promptText?: string;
  yes?: boolean;
  force?: boolean;
  /** The global `--env-file`: where the variables go (default `./.env`). */
  envFile?: string;
}

/**
 * `bots init`: asks (on a terminal, unless `--yes`) or takes from flags the channel, name, model,
 * base URL, variable names, time zone, account, cost and prompt; writes `configs/NAME.yaml`,
 * `prompts/NAME.md`, appends the variables `.env` does not mention yet (empty, never changing a
 * line already there); refuses to overwrite the files unless confirmed or `--force`; then checks
 * the new config as `bots config check` does (with stand-ins for variables not set yet, which it
 * lists).
 * @throws UsageError (exit 2) for a missing or bad flag, or existing files; ExitError(2) when the check fails
 */
export async function initCommand(c: CliContext, opts: InitOptions): Promise<void> {
  const ask = c.interactive && !opts.yes && !c.json;
  const spec = ask ? await askNewBot(opts) : fromFlags(opts);
  validateSpec(spec);
  const targets = initTargets(c.configDir, spec.name);
  let overwrite = Boolean(opts.force);
  if (targets.existing.length && !overwrite && ask) {
    const { confirm } = await import("@inquirer/prompts");
    overwrite = await confirm({ message: `${targets.existing.map(rel).join(" and ")} exist. Overwrite?`, default: false });
    if (!overwrite) {
      c.err("Cancelled; nothing written.");
      return;
    }
  }
  const result = writeNewBot(c.configDir, spec, { overwrite, envFile: opts.envFile ?? ".env" });
  const { env, missing } = placeholderEnv(spec, c.env);
  if (!c.json) {
    c.out(`${chalk.green("wrote")} ${rel(result.configFile)}`);
    c.out(`${chalk.green("wrote")} ${rel(result.promptFile)}`);
    c.out(
      result.addedVars.length
        ? `${chalk.green("added")} ${result.addedVars.join(", ")} to ${rel(result.envFile)} (empty; values already there are kept)`
        : `${rel(result.envFile)} already lists the variables`,
    );
    c.out(chalk.dim("Checking the configs:"));
  }
  // The check of `bots config check`, limited to the new file (and name clashes with others):
  // other bots' unset variables are not this wizard's business.
  const { bots, problems } = loadBotConfigs(c.configDir, env);
  const mine = problems.filter((p) => path.resolve(p.file) === result.configFile || (p.field === "name" && p.message.includes(`'${spec.name}'`)));
  if (mine.length) {
    for (const p of mine) c.err(formatProblem(p));
    c.err(chalk.red(`${mine.length} problem${mine.length === 1 ? "" : "s"}: fix ${rel(result.configFile)} and run bots config check`));
    throw new ExitError(2);
  }
  const bot = bots.find((b) => b.name === spec.name)!;
  if (c.json) {
    c.out(
      JSON.stringify({
        config: result.configFile,
        prompt: result.promptFile,
        env_file: result.envFile,
        added_vars: result.addedVars,
        variables_to_set: missing,
        check: "ok",
      }),
    );
    return;
  }
  c.out(table(["NAME", "CHANNEL", "ENABLED", "MODEL", "ACCOUNT"], [[bot.name, bot.channel, bot.enabled ? "yes" : "no", bot.llm.model, bot.balance.account]]));
  c.out(chalk.green(`${bot.name} OK`));
  if (missing.length) c.out(chalk.yellow(`Set ${missing.join(", ")} in ${rel(result.envFile)} (or the environment) before \`bots start ${spec.name}\`.`));
  c.out(`Next: bots prompt test ${spec.name} "Здравствуйте!"`);
}

function rel(file: string): string {
  const r = path.relative(process.cwd(), file);
  return r && !r.startsWith("..") ? r : file;
}

function defaults(channel: ChannelName, name: string, o: InitOptions) {
  const stem = varStem(name);
  return {
    tokenVar: o.tokenVar ?? `${stem}_TOKEN`,
    confirmationVar: o.confirmationVar ?? `${stem}_CONFIRMATION`,
    secretVar: o.secretVar ?? `${stem}_SECRET`,
    loginVar: o.loginVar ?? `${stem}_LOGIN`,
    passwordVar: o.passwordVar ?? `${stem}_PASSWORD`,
    channel,
  };
}

function parseCost(text: string | undefined): number {
  if (text === undefined) return 5;
  const n = Number(text.replace(",", "."));
  if (!/^\d+([.,]\d{1,2})?$/.test(text.trim()) || !Number.isFinite(n))
    throw new UsageError("INIT_INVALID", `--cost: '${text}' is not an amount of credits`, { hint: "e.g. 5 or 2.50" });
  return n;
}

function fromFlags(o: InitOptions): NewBotSpec {
  if (!o.name)
    throw new UsageError("INIT_NAME_MISSING", "--name is required without a terminal (or with --yes)", { hint: "bots init --channel tg --name shop-tg --yes" });
  const channel = (o.channel ?? "tg") as ChannelName;
  const d = defaults(channel, o.name, o);
  return {
    name: o.name,
    channel,
    model: o.model ?? "gpt-4o-mini",
    apiKeyVar: o.apiKeyVar ?? "OPENAI_API_KEY",
    baseUrl: o.baseUrl || undefined,
    timezone: o.timezone ?? machineTimeZone(),
    tokenVar: d.tokenVar,
    vkGroupId: o.groupId !== undefined ? Number(o.groupId) : undefined,
    vkConfirmationVar: d.confirmationVar,
    vkSecretVar: d.secretVar,
    dgisLoginVar: d.loginVar,
    dgisPasswordVar: d.passwordVar,
    branchIds: o.branchId
      ?.flatMap((b) => b.split(","))
      .map((b) => b.trim())
      .filter(Boolean),
    account: o.account ?? "default",
    cost: parseCost(o.cost),
    promptText: o.promptText ?? DEFAULT_PROMPT,
  };
}

/** Where the wizard's questions are asked (@inquirer/prompts' context); tests pass streams. */
export type PromptContext = { input?: NodeJS.ReadableStream; output?: NodeJS.WritableStream; clearPromptOnDone?: boolean };

/**
 * The `bots init` wizard: asks, with @inquirer/prompts, every question whose flag was not given
 * (channel, name, model, base URL, variable names, community or branch ids, time zone, account,
 * cost, prompt text).
 * @param context the terminal to ask on; @defaultValue stdin/stdout
 * @returns the spec, not yet validated
 */
export async function askNewBot(o: InitOptions, context?: PromptContext): Promise<NewBotSpec> {
  const prompts = await import("@inquirer/prompts");
  const input = (config: Parameters<typeof prompts.input>[0]) => prompts.input(config, context as never);
  const select = <T>(config: Parameters<typeof prompts.select<T>>[0]) => prompts.select<T>(config, context as never);
  const channel = (o.channel ??
    (await select({
      message: "Channel",
      choices: [
        { name: "Telegram", value: "tg" },
        { name: "VK (messages and wall comments)", value: "vk" },
        { name: "2GIS (reviews)", value: "2gis" },
      ],
    }))) as ChannelName;
  const name =
    o.name ??
    (await input({ message: "Bot name", default: `shop-${channel}`, validate: (v) => /^[a-z0-9-]+$/.test(v) || "lowercase letters, digits and '-'" }));
  const d = defaults(channel, name, o);
  const varOk = (v: string) => /^[A-Z_][A-Z0-9_]*$/.test(v) || "UPPER_CASE letters, digits and '_'";
  const model = o.model ?? (await input({ message: "Model", default: "gpt-4o-mini" }));
  const baseUrl =
    o.baseUrl ??
    (
      await input({
        message: "OpenAI-compatible base URL (empty: the OpenAI API; Ollama: http://127.0.0.1:11434/v1)",
        validate: (v) => !v.trim() || /^https?:\/\/\S+$/.test(v.trim()) || "an http(s) URL, or empty",
      })
    ).trim();
  const apiKeyVar = o.apiKeyVar ?? (await input({ message: "Variable with the model API key", default: "OPENAI_API_KEY", validate: varOk }));
  const spec: NewBotSpec = { ...fromFlags({ ...o, name, channel, model, baseUrl, apiKeyVar, yes: true }) };
  if (channel === "tg" || channel === "vk")
    spec.tokenVar =
      o.tokenVar ??
      (await input({
        message: `Variable with the ${channel === "tg" ? "bot token (from @BotFather)" : "community token"}`,
        default: d.tokenVar,
        validate: varOk,
      }));
  if (channel === "vk") {
    spec.vkGroupId = Number(o.groupId ?? (await input({ message: "VK community id (group_id)", validate: (v) => /^\d+$/.test(v) || "a number" })));
    spec.vkConfirmationVar =
      o.confirmationVar ?? (await input({ message: "Variable with the Callback API confirmation string", default: d.confirmationVar, validate: varOk }));
    spec.vkSecretVar = o.secretVar ?? (await input({ message: "Variable with the Callback API secret", default: d.secretVar, validate: varOk }));
  }
  if (channel === "2gis") {
    spec.dgisLoginVar = o.loginVar ?? (await input({ message: "Variable with the 2GIS cabinet login", default: d.loginVar, validate: varOk }));
    spec.dgisPasswordVar = o.passwordVar ?? (await input({ message: "Variable with the 2GIS cabinet password", default: d.passwordVar, validate: varOk }));
    if (!spec.branchIds?.length)
      spec.branchIds = (
        await input({ message: "2GIS branch ids (comma-separated)", validate: (v) => /^\d+(\s*,\s*\d+)*$/.test(v.trim()) || "numbers separated by commas" })
      )
        .split(",")
        .map((s) => s.trim());
  }
  spec.timezone =
    o.timezone ??
    (
      await input({
        message: "Time zone of the bot ({{now}}, reports, reminders)",
        default: machineTimeZone(),
        validate: (v) => isTimeZone(v.trim()) || "an IANA zone such as Europe/Moscow or UTC",
      })
    ).trim();
  spec.account = o.account ?? (await input({ message: "Balance account", default: "default" }));
  spec.cost = parseCost(
    o.cost ?? (await input({ message: "Credits per reply", default: "5", validate: (v) => /^\d+([.,]\d{1,2})?$/.test(v.trim()) || "e.g. 5 or 2.50" })),
  );
  spec.promptText =
    o.promptText ?? (await input({ message: "System prompt (one line; edit the file later)", default: DEFAULT_PROMPT.replace(/\n/g, " ").trim() }));
  return spec;
}
