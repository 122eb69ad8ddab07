import { readFileSync } from "node:fs";
import path from "node:path";
import { ConfigError } from "../errors.js";
import type { BotConfig } from "../config/schema.js";

/** Kinds of incoming text a prompt can be chosen for (`prompt: {messages, comments, reviews}`). */
export type PromptKind = "messages" | "comments" | "reviews";

/**
 * Reads the bot's system prompt file for a kind of message. With one prompt file it serves all
 * kinds; with a mapping, a missing kind falls back to `messages`.
 * @throws ConfigError when the file cannot be read
 */
export function loadPrompt(bot: Pick<BotConfig, "prompt" | "root" | "name">, kind: PromptKind = "messages", override?: string): string {
  const rel = override ?? (typeof bot.prompt === "string" ? bot.prompt : (bot.prompt[kind] ?? bot.prompt.messages));
  if (!rel) throw new ConfigError("PROMPT_MISSING", `bot ${bot.name} has no prompt for ${kind}`, { hint: `add prompt.${kind} to its config` });
  const file = path.resolve(bot.root, rel);
  try {
    return readFileSync(file, "utf8");
  } catch (cause) {
    throw new ConfigError("PROMPT_UNREADABLE", `prompt file ${file} of bot ${bot.name} cannot be read`, { cause, hint: "check the prompt path in the bot's config" });
  }
}

/**
 * Fills `{{name}}` placeholders. Known: `bot_name`, `now` (bot's time zone, `YYYY-MM-DD HH:mm
 * <zone>`), `date`, `weekday`, and any extra variable given (post text, rating...). Unknown
 * placeholders are left as written so a typo is visible in `bots prompt test`.
 * @param nowMs epoch ms UTC
 */
export function renderPrompt(template: string, vars: { botName: string; timezone: string; nowMs: number; extra?: Record<string, string> }): string {
  const parts = Object.fromEntries(
    formatterFor(vars.timezone)
      .formatToParts(new Date(vars.nowMs))
      .map((p) => [p.type, p.value]),
  );
  const date = `${parts.year}-${parts.month}-${parts.day}`;
  const values: Record<string, string> = {
    bot_name: vars.botName,
    date,
    now: `${date} ${parts.hour}:${parts.minute} ${vars.timezone}`,
    weekday: parts.weekday ?? "",
    ...vars.extra,
  };
  return template.replace(/\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}/gi, (m, name: string) => values[name] ?? m);
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** One formatter per time zone: building an Intl.DateTimeFormat costs about a millisecond. */
function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat("en-GB", { timeZone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", weekday: "long", hourCycle: "h23" });
    formatters.set(timeZone, f);
  }
  return f;
}
