import { spawn } from "node:child_process";
import path from "node:path";
import chalk from "chalk";
import { loadBotConfigs } from "../config/load.js";
import { UsageError } from "../errors.js";
import { terminalSafe } from "../terminal.js";
import { formatCredits } from "../storage/balance.js";
import { ConversationsRepo, type ConversationFilter, type ThreadSummary } from "../storage/conversations.js";
import { partialAnswer, type MessageRow } from "../storage/messages.js";
import { INCOMING_STATUSES } from "../storage/schema.js";
import type { CliContext } from "./context.js";
import { noSuchBot, table, withStore } from "./shared.js";
import { parseCount, parseWhen } from "./time.js";
import { isoDateTime, wallParts } from "../lib/zoned.js";

/** Options of `bots dialogs`. */
export interface DialogsOptions {
  user?: string;
  since?: string;
  grep?: string;
  status?: string;
  limit?: string;
  before?: string;
  /** `--no-pager` sets false. */
  pager?: boolean;
}

/** Statuses `--status` accepts: every incoming one, and those of proactive (outgoing) messages. */
const STATUSES: readonly string[] = [...INCOMING_STATUSES, "sent", "pending"];

/**
 * `bots dialogs [BOT] [THREAD_KEY]`: without a thread, the conversations (newest activity first,
 * `--limit` per page, `--before CURSOR` for the next); with a thread or `--user ID`, the
 * conversation as a chat with times in the bot's `timezone`, statuses, costs and failure
 * reasons. `--since`, `--grep`, `--status` filter messages; `--json` prints rows; a long
 * listing goes through `$PAGER` (default `less -FRX`) on a terminal.
 * @throws UsageError (exit 2) for a bad option or a thread without a bot
 */
export async function dialogsCommand(c: CliContext, bot: string | undefined, threadKey: string | undefined, opts: DialogsOptions): Promise<void> {
  const now = Date.now();
  const filter: ConversationFilter = {
    ...(opts.since ? { sinceMs: parseWhen(opts.since, now, "--since") } : {}),
    ...(opts.grep ? { grep: opts.grep } : {}),
    ...(opts.status ? { statuses: parseStatuses(opts.status) } : {}),
  };
  if (opts.user && !bot) throw new UsageError("DIALOGS_USAGE", "--user needs a bot: bots dialogs BOT --user ID");
  const loaded = loadBotConfigs(c.configDir, c.env);
  const zones = new Map(loaded.bots.map((b) => [b.name, b.timezone]));
  const zoneOf = (b: string) => zones.get(b) ?? "UTC";
  await withStore(c, async (store) => {
    const repo = new ConversationsRepo(store.database.db);
    // A bot removed from the configs still has its conversations; a name nothing knows is a typo.
    const configured = [...loaded.bots.map((b) => b.name), ...loaded.files.map((f) => path.basename(f).replace(/\.ya?ml$/, ""))];
    if (bot && !configured.includes(bot) && !(await repo.hasBot(bot))) throw noSuchBot(bot, [...configured, ...(await repo.bots())]);
    if (threadKey || opts.user) {
      const limit = parseCount(opts.limit ?? "500", "--limit");
      const keys = threadKey ? [threadKey] : await repo.threadsOfUser(bot!, opts.user!);
      if (!keys.length)
        throw new UsageError("DIALOG_NOT_FOUND", `no conversation of user ${opts.user} with ${bot}`, { hint: `list them: bots dialogs ${bot}` });
      const threads = await Promise.all(keys.map(async (k) => ({ key: k, rows: await repo.thread(bot!, k, filter, limit) })));
      if (c.json) {
        c.out(JSON.stringify(threads.flatMap((t) => t.rows.map(jsonRow))));
        return;
      }
      const lines: string[] = [];
      for (const t of threads) lines.push(...chatLines(bot!, t.key, t.rows, zoneOf(bot!)));
      if (threads.every((t) => !t.rows.length))
        throw new UsageError("DIALOG_NOT_FOUND", `no matching messages in ${bot} ${keys.join(", ")}`, { hint: `list the conversations: bots dialogs ${bot}` });
      await page(c, lines, opts.pager !== false);
      return;
    }
    const limit = parseCount(opts.limit ?? "50", "--limit");
    const before = opts.before ? parseCount(opts.before, "--before", 1, Number.MAX_SAFE_INTEGER) : null;
    const list = await repo.list(bot ?? null, filter, limit, before);
    if (c.json) {
      c.out(JSON.stringify({ threads: list.threads.map((t) => ({ ...t, last_at: new Date(t.last_ms).toISOString() })), next_before: list.cursor }));
      return;
    }
    if (!list.threads.length) {
      c.out(bot ? `No conversations of ${bot}${Object.keys(filter).length ? " matching the filters" : ""}.` : "No conversations.");
      return;
    }
    const lines = table(
      ["BOT", "THREAD", "USER", "MESSAGES", "LAST MESSAGE", "LAST STATUS"],
      list.threads.map((t) => [
        terminalSafe(t.bot),
        terminalSafe(t.thread_key),
        userLabel(t),
        String(t.messages),
        formatIn(t.last_ms, zoneOf(t.bot)),
        paintStatus(t.last_status ?? "-"),
      ]),
    ).split("\n");
    if (list.cursor !== null) lines.push("", chalk.dim(`more: bots dialogs ${bot ?? ""} --before ${list.cursor}`.replace("  ", " ")));
    lines.push(chalk.dim(`read one: bots dialogs ${list.threads[0]!.bot} ${list.threads[0]!.thread_key}`));
    await page(c, lines, opts.pager !== false);
  });
}

function parseStatuses(text: string): string[] {
  const list = text
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  const bad = list.filter((s) => !STATUSES.includes(s));
  if (bad.length || !list.length)
    throw new UsageError("STATUS_INVALID", `--status '${text}': unknown status ${bad.join(", ")}`, { hint: `one or more of ${STATUSES.join(", ")}` });
  return list;
}

function userLabel(t: Pick<ThreadSummary, "user_name" | "user_id">): string {
  if (t.user_name && t.user_id) return terminalSafe(`${t.user_name} (${t.user_id})`);
  return terminalSafe(t.user_name ?? t.user_id ?? "-");
}

function paintStatus(s: string): string {
  if (s === "answered" || s === "sent") return chalk.green(s);
  if (s === "failed" || s === "expired" || s === "unconfirmed") return chalk.red(s);
  if (s === "no_balance" || s === "filtered" || s === "skipped" || s === "partial") return chalk.yellow(s);
  return s;
}

/** `YYYY-MM-DD HH:MM` in the zone, with the zone's name. */
export function formatIn(ms: number, timeZone: string): string {
  return isoDateTime(wallParts(ms, timeZone));
}

function chatLines(bot: string, threadKey: string, rows: MessageRow[], zone: string): string[] {
  const lines = [chalk.bold(terminalSafe(`${bot} · ${threadKey}`)) + chalk.dim(` · times in ${zone}`), ""];
  for (const r of rows) {
    const at = chalk.dim(formatIn(r.created_ms, zone));
    if (r.direction === "in") {
      const who = chalk.cyan(userLabel(r));
      const reason = r.error && r.status !== "answered" ? chalk.dim(` (${terminalSafe(r.error)})`) : "";
      lines.push(`${at}  ${who}  ${paintStatus(r.status)}${partsNote(r)}${reason}  ${chalk.dim(`#${r.id}`)}`);
    } else {
      const bits = [
        r.model,
        r.prompt_tokens !== null ? `${r.prompt_tokens}+${r.completion_tokens ?? 0} tokens` : null,
        r.cost !== null ? `${formatCredits(r.cost)} credits` : null,
        r.latency_ms !== null ? `${r.latency_ms} ms` : null,
      ].filter(Boolean);
      lines.push(
        `${at}  ${chalk.magenta("bot")}  ${chalk.dim(terminalSafe(bits.join(" · ")))}  ${chalk.dim(`#${r.id}${r.reply_to_id ? ` → #${r.reply_to_id}` : ""}`)}`,
      );
    }
    for (const l of terminalSafe(r.text).split("\n")) lines.push(`    ${l}`);
  }
  lines.push("");
  return lines;
}

/** ` · parts 3 of 5 delivered` for an answer in parts that is not settled (`parts_sent`, `delivery`). */
function partsNote(r: MessageRow): string {
  if (!r.parts_sent || r.status === "answered") return "";
  const of = partialAnswer(r)?.parts;
  return chalk.yellow(` · parts ${r.parts_sent}${of ? ` of ${of}` : ""} delivered`);
}

function jsonRow(r: MessageRow) {
  return {
    id: r.id,
    bot: r.bot,
    thread_key: r.thread_key,
    direction: r.direction,
    status: r.status,
    at: new Date(r.created_ms).toISOString(),
    user_id: r.user_id,
    user_name: r.user_name,
    text: r.text,
    reply_to_id: r.reply_to_id,
    model: r.model,
    prompt_tokens: r.prompt_tokens,
    completion_tokens: r.completion_tokens,
    cost: r.cost === null ? null : formatCredits(r.cost),
    latency_ms: r.latency_ms,
    error: r.error,
    parts_sent: r.parts_sent,
  };
}

/** Prints lines, through `$PAGER` (default `less -FRX`) when on a terminal and longer than it. */
async function page(c: CliContext, lines: string[], allowed: boolean): Promise<void> {
  const rows = process.stdout.rows ?? 24;
  if (!allowed || !c.interactive || !process.stdout.isTTY || lines.length < rows) {
    for (const l of lines) c.out(l);
    return;
  }
  const pager = c.env.PAGER || "less -FRX";
  await new Promise<void>((resolve) => {
    const child = spawn(pager, { shell: true, stdio: ["pipe", "inherit", "inherit"] });
    child.on("error", () => {
      for (const l of lines) c.out(l);
      resolve();
    });
    child.on("exit", () => resolve());
    child.stdin.on("error", () => undefined);
    child.stdin.end(`${lines.join("\n")}\n`);
  });
}
