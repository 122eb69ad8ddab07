import { closeSync, constants, fstatSync, openSync, readSync, statSync } from "node:fs";
import path from "node:path";
import { ConfigError } from "../errors.js";
import type { BotConfig } from "../config/schema.js";
import { cachedFormat } from "../lib/zoned.js";

/** Kinds of incoming text a prompt can be chosen for (`prompt: {messages, comments, reviews}`). */
export type PromptKind = "messages" | "comments" | "reviews";

/** Largest prompt file, bytes (256 KB): a system prompt is text a model reads on every message. */
export const PROMPT_MAX_BYTES = 256 * 1024;

/**
 * Why a path cannot be a prompt file, or null when it can: it must be a regular file (not a
 * device such as /dev/zero, a FIFO or a directory) of at most {@link PROMPT_MAX_BYTES}. Follows
 * symlinks; never opens the file.
 */
export function promptFileProblem(file: string): string | null {
  let st;
  try {
    st = statSync(file);
  } catch {
    return null; // a missing file is reported as such by the caller
  }
  if (!st.isFile()) return "is not a regular file (a prompt is a text file)";
  if (st.size > PROMPT_MAX_BYTES) return `is ${Math.ceil(st.size / 1024)} KB; a prompt file may have at most ${PROMPT_MAX_BYTES / 1024} KB`;
  return null;
}

/**
 * Reads a prompt file: a regular file of at most {@link PROMPT_MAX_BYTES}, checked on the open
 * file and by reading at most one byte more (a file that grew after the check is refused too).
 * Opened non-blocking, so a FIFO cannot hang the read.
 * @throws Error naming what is wrong
 */
function readPromptFile(file: string): string {
  const fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error("not a regular file");
    const buf = Buffer.alloc(Math.min(st.size, PROMPT_MAX_BYTES) + 1);
    let n = 0;
    while (n < buf.length) {
      const r = readSync(fd, buf, n, buf.length - n, null);
      if (r <= 0) break;
      n += r;
    }
    if (n > PROMPT_MAX_BYTES) throw new Error(`larger than ${PROMPT_MAX_BYTES / 1024} KB`);
    return buf.subarray(0, n).toString("utf8");
  } finally {
    closeSync(fd);
  }
}

/** Prompt files read, by path: the text and the file's identity when it was read (see {@link cachedPromptFile}). */
const promptFiles = new Map<string, { version: string; text: string }>();

/**
 * {@link readPromptFile}, read again only when the file changed: one stat per call, and the
 * open, checks and read when its inode, size, modification or change time (ns) differ from the
 * last read. An edit of the prompt applies to the next answer, as a read every time would (on a
 * file system with coarse timestamps, an edit that keeps the size within the same tick is seen
 * at the next change).
 * @throws Error naming what is wrong (not a regular file, too large, unreadable)
 */
function cachedPromptFile(file: string): string {
  const st = statSync(file, { bigint: true });
  if (!st.isFile()) throw new Error("not a regular file");
  const version = `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  const known = promptFiles.get(file);
  if (known?.version === version) return known.text;
  const text = readPromptFile(file);
  if (promptFiles.size >= 256) promptFiles.clear();
  promptFiles.set(file, { version, text });
  return text;
}

/**
 * Reads the bot's system prompt file for a kind of message. With one prompt file it serves all
 * kinds; with a mapping, a missing kind falls back to `messages`.
 * @throws ConfigError `PROMPT_UNREADABLE` when the file cannot be read, is not a regular file or
 *   is larger than {@link PROMPT_MAX_BYTES}
 */
export function loadPrompt(bot: Pick<BotConfig, "prompt" | "root" | "name">, kind: PromptKind = "messages", override?: string): string {
  const rel = override ?? (typeof bot.prompt === "string" ? bot.prompt : (bot.prompt[kind] ?? bot.prompt.messages));
  if (!rel) throw new ConfigError("PROMPT_MISSING", `bot ${bot.name} has no prompt for ${kind}`, { hint: `add prompt.${kind} to its config` });
  const file = path.resolve(bot.root, rel);
  try {
    return cachedPromptFile(file);
  } catch (cause) {
    throw new ConfigError("PROMPT_UNREADABLE", `prompt file ${file} of bot ${bot.name} cannot be read: ${(cause as Error).message}`, {
      cause,
      hint: `check the prompt path in the bot's config (a regular file of at most ${PROMPT_MAX_BYTES / 1024} KB)`,
    });
  }
}

/** What {@link renderPrompt} fills in: the bot's name, its IANA time zone, the time (epoch ms UTC) and extra variables. */
export interface PromptVars {
  botName: string;
  timezone: string;
  nowMs: number;
  extra?: Record<string, string>;
}

/**
 * Fills `{{name}}` placeholders. Known: `bot_name`, `now` (bot's time zone, `YYYY-MM-DD HH:mm
 * <zone>`), `date`, `weekday`, and any extra variable given (post text, rating...). Unknown
 * placeholders are left as written so a typo is visible in `bots prompt test`.
 * @param nowMs epoch ms UTC
 */
export function renderPrompt(template: string, vars: PromptVars): string {
  // Without extra variables the text depends on the minute only (the clock's resolution).
  const plain = !vars.extra || Object.keys(vars.extra).length === 0;
  const minute = Math.floor(vars.nowMs / 60_000);
  if (plain) {
    const last = renderedPrompts.get(template);
    if (last && last.minute === minute && last.botName === vars.botName && last.timezone === vars.timezone) return last.text;
  }
  const text = renderNow(template, vars);
  if (plain) {
    if (renderedPrompts.size >= 256) renderedPrompts.clear();
    renderedPrompts.set(template, { minute, botName: vars.botName, timezone: vars.timezone, text });
  }
  return text;
}

/** The last rendering of each template without extra variables, with its minute (epoch ms / 60,000), bot and zone. */
const renderedPrompts = new Map<string, { minute: number; botName: string; timezone: string; text: string }>();

/** {@link renderPrompt} without the cache. */
function renderNow(template: string, vars: PromptVars): string {
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

const PROMPT_CLOCK: Intl.DateTimeFormatOptions = {
  year: "numeric",
  month: "2-digit",
  day: "2-digit",
  hour: "2-digit",
  minute: "2-digit",
  weekday: "long",
  hourCycle: "h23",
};

/** The prompt's clock (`{{date}}`, `{{now}}`, `{{weekday}}`) in `timeZone`, one formatter per zone. */
function formatterFor(timeZone: string): Intl.DateTimeFormat {
  return cachedFormat("prompt", "en-GB", PROMPT_CLOCK, timeZone);
}
