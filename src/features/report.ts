import { Readable } from "node:stream";
import { durationMs } from "../lib/duration.js";
import { formatCredits } from "../storage/balance.js";
import { Cron } from "croner";
import type { Logger } from "pino";
import type { BotConfig } from "../config/schema.js";
import type { Feature } from "../core/pipeline.js";
import { sleep as realSleep, withRetries } from "../lib/retry.js";
import { UsageError } from "../errors.js";
import { classifySmtpError, escapeHtml, formatLocal, htmlLines, oneLine, type MailSender } from "../notify/email.js";
import { DialogsRepo, type PeriodCounts } from "../storage/dialogs.js";
import type { Store } from "../storage/index.js";
import type { MessageRow } from "../storage/messages.js";
import type { LeadRow } from "../storage/leads.js";
import type { ReportConfig } from "../config/features.js";

/**
 * Parses a duration such as `24h`, `30m`, `7d`, `90s`, `2w` into ms.
 * @throws UsageError when it is not one, or is zero
 */
export function parseDuration(text: string): number {
  const ms = durationMs(text);
  if (ms === undefined || ms <= 0) throw new UsageError("DURATION_INVALID", `'${text}' is not a duration`, { hint: "use e.g. 24h, 30m, 7d" });
  return ms;
}

/** A period of a report: `[sinceMs, untilMs)`, epoch ms UTC. */
export interface ReportPeriod {
  sinceMs: number;
  untilMs: number;
}

/** Options of {@link renderReport}. */
export interface RenderOptions extends ReportPeriod {
  /** Threads read from the database per page. @defaultValue 50 */
  pageSize?: number;
}

const STATUS_LABEL: Record<string, string> = {
  failed: "ошибка",
  filtered: "спам-фильтр",
  no_balance: "нет баланса",
  received: "без ответа",
  sending: "отправляется",
  delivering: "доставка не подтверждена",
  unconfirmed: "доставка не подтверждена",
  partial: "доставлен частично",
  skipped: "пропущено",
};

/**
 * The HTML dialog report of one bot for a period (docs/sales.md): the counts (messages,
 * answered, failed, leads, credits spent), then every dialog of the period as a thread, in the
 * order the dialogs started. Yields the document in chunks, reading the database a page of
 * threads at a time. Everything users or the model wrote is HTML-escaped; times are in the
 * bot's time zone.
 */
export async function* renderReport(store: Store, bot: Pick<BotConfig, "name" | "timezone">, o: RenderOptions): AsyncGenerator<string> {
  const repo = new DialogsRepo(store.database.db);
  const tz = bot.timezone;
  const counts = await repo.counts(bot.name, o.sinceMs, o.untilMs);
  const leads = await store.leads.createdBetween(bot.name, o.sinceMs, o.untilMs);
  const title = `Диалоги ${bot.name}: ${formatLocal(o.sinceMs, tz)} — ${formatLocal(o.untilMs, tz)} (${tz})`;
  yield `<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>body{font-family:sans-serif;max-width:900px}.dialog{border:1px solid #ccc;border-radius:6px;padding:8px;margin:12px 0}
.turn{margin:6px 0}.user b{color:#1a5fb4}.assistant b{color:#26a269}.status{color:#c01c28}small{color:#777}th{text-align:left;padding-right:12px}</style>
</head><body>
<h1>${escapeHtml(title)}</h1>
${countsTable(counts, leads.length)}
`;
  if (leads.length) {
    yield `<h2>Заявки</h2><table class="leads"><tr><th>Имя</th><th>Телефон</th><th>E-mail</th><th>Комментарий</th><th>Диалог</th></tr>\n`;
    for (const l of leads)
      yield `<tr class="lead"><td>${cell(l.name)}</td><td>${cell(l.phone)}</td><td>${cell(l.email)}</td><td>${cell(l.note)}</td><td>${cell(l.thread_key)}</td></tr>\n`;
    yield `</table>\n`;
  }
  yield `<h2>Диалоги</h2>\n`;
  if (counts.dialogs === 0) yield `<p>За период диалогов не было.</p>\n`;
  const leadOf = new Map<string, LeadRow>(leads.map((l) => [l.thread_key, l]));
  let cursor: number | null = null;
  do {
    const page = await repo.threads(bot.name, o.sinceMs, o.untilMs, cursor, o.pageSize ?? 50);
    cursor = page.cursor;
    const rows = await repo.messagesOf(bot.name, page.threads, o.sinceMs, o.untilMs);
    const byThread = new Map<string, MessageRow[]>();
    for (const r of rows) byThread.set(r.thread_key, [...(byThread.get(r.thread_key) ?? []), r]);
    for (const key of page.threads) yield dialogHtml(key, byThread.get(key) ?? [], leadOf.get(key), tz);
  } while (cursor !== null);
  yield `</body></html>\n`;
}

function countsTable(c: PeriodCounts, leads: number): string {
  const rows: Array<[string, string, string]> = [
    ["dialogs", "Диалогов", String(c.dialogs)],
    ["messages", "Сообщений от пользователей", String(c.messages)],
    ["answered", "Отвечено", String(c.answered)],
    ["failed", "Ошибок", String(c.failed)],
    ["filtered", "Отфильтровано", String(c.filtered)],
    ["no_balance", "Без баланса", String(c.noBalance)],
    ["leads", "Заявок", String(leads)],
    ["credits", "Потрачено кредитов", formatCredits(c.cost)],
  ];
  return `<table class="counts">${rows.map(([k, label, v]) => `<tr><th>${label}</th><td data-count="${k}">${v}</td></tr>`).join("")}</table>`;
}

function cell(v: string | null): string {
  return v ? escapeHtml(v) : "—";
}

function dialogHtml(key: string, rows: MessageRow[], lead: LeadRow | undefined, tz: string): string {
  const user = rows.find((r) => r.direction === "in" && r.user_name)?.user_name ?? rows.find((r) => r.direction === "in")?.user_id ?? "";
  const head = `<h3>${escapeHtml(oneLine(user) || key)} <small>${escapeHtml(key)} · ${rows.filter((r) => r.direction === "in").length} сообщ.${lead ? " · заявка" : ""}</small></h3>`;
  const turns = rows.map((r) => {
    const who = r.direction === "in" ? "Клиент" : "Бот";
    const status =
      r.direction === "in" && r.status !== "answered"
        ? ` <span class="status">[${escapeHtml(STATUS_LABEL[r.status] ?? r.status)}${r.error ? `: ${escapeHtml(oneLine(r.error).slice(0, 200))}` : ""}]</span>`
        : "";
    const cost = r.direction === "out" && r.cost ? ` <small>${formatCredits(r.cost)} кр.</small>` : "";
    return `<div class="turn ${r.direction === "in" ? "user" : "assistant"}"><b>${who}</b> <small>${escapeHtml(formatLocal(r.created_ms, tz))}</small>${cost}${status}<br>${htmlLines(r.text)}</div>`;
  });
  return `<div class="dialog" data-thread="${escapeHtml(key)}">${head}\n${turns.join("\n")}</div>\n`;
}

/** The report's subject from `report.subject` (`{bot}`, `{from}`, `{to}` filled in). */
export function reportSubject(template: string, bot: Pick<BotConfig, "name" | "timezone">, p: ReportPeriod): string {
  const values: Record<string, string> = { bot: bot.name, from: formatLocal(p.sinceMs, bot.timezone), to: formatLocal(p.untilMs, bot.timezone) };
  return template.replace(/\{(bot|from|to)\}/g, (_m, k: string) => values[k]!).replace(/[\r\n]+/g, " ");
}

/**
 * Builds the report and e-mails it, streaming the HTML into the SMTP connection. A failed
 * attempt (SMTP down, 4xx) is retried with a fresh stream.
 * @returns the accepted message id
 * @throws MailError after retries
 */
export async function mailReport(
  store: Store,
  bot: Pick<BotConfig, "name" | "timezone">,
  mailer: MailSender,
  o: RenderOptions & { to: string[]; subject: string; retries?: number; backoffMs?: number; signal?: AbortSignal },
): Promise<string> {
  return withRetries(() => mailer.send({ to: o.to, subject: reportSubject(o.subject, bot, o), html: Readable.from(renderReport(store, bot, o)) }), {
    retries: o.retries ?? 2,
    baseMs: o.backoffMs ?? 30_000,
    classify: classifySmtpError,
    signal: o.signal,
  });
}

/** Dependencies of the report feature (see `FeatureDeps`). */
export interface ReportDeps {
  store: Store;
  logger: Logger;
  /** Clock, epoch ms UTC: the schedule runs by it. */
  now: () => number;
  /** Waits by that clock. @defaultValue setTimeout */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  mailer: MailSender;
  /** Back-off between attempts of one report mail, ms. @defaultValue 30000 */
  retryBackoffMs?: number;
}

/** Longest single wait of the schedule, ms: the clock is read again after it (sleep, clock changes). */
const MAX_WAIT_MS = 60_000;

/**
 * `features.report` (docs/sales.md): inside `bots start`, e-mails the report of the last
 * `report.period` to `report.to` whenever `report.cron` fires in the bot's time zone. The
 * schedule is computed by croner and waited for with the injected clock, so tests move time.
 */
export function reportFeature(bot: BotConfig, cfg: ReportConfig, deps: ReportDeps): Feature & { readonly sent: number } {
  const log = deps.logger.child({ feature: "report" });
  const sleep = deps.sleep ?? realSleep;
  const cron = new Cron(cfg.cron, { timezone: bot.timezone, paused: true });
  const period = parseDuration(cfg.period);
  const abort = new AbortController();
  let loop: Promise<void> | undefined;
  let sent = 0;

  const waitUntil = async (t: number) => {
    for (let left = t - deps.now(); left > 0 && !abort.signal.aborted; left = t - deps.now()) await sleep(Math.min(left, MAX_WAIT_MS), abort.signal);
  };

  return {
    name: "report",
    get sent() {
      return sent;
    },
    start() {
      loop = (async () => {
        while (!abort.signal.aborted) {
          const next = cron.nextRun(new Date(deps.now()));
          if (!next) return;
          log.info({ next_run: next.toISOString(), cron: cfg.cron, timezone: bot.timezone }, "next report scheduled");
          await waitUntil(next.getTime());
          if (abort.signal.aborted) return;
          const untilMs = next.getTime();
          try {
            const id = await mailReport(deps.store, bot, deps.mailer, {
              sinceMs: untilMs - period,
              untilMs,
              to: cfg.to,
              subject: cfg.subject,
              backoffMs: deps.retryBackoffMs,
              signal: abort.signal,
            });
            sent++;
            log.info(
              { to: cfg.to, message_id: id, since: new Date(untilMs - period).toISOString(), until: new Date(untilMs).toISOString() },
              "report e-mailed",
            );
          } catch (error) {
            log.error({ err: error }, "report could not be e-mailed; `bots report send` sends it by hand");
          }
        }
      })();
    },
    async stop() {
      abort.abort();
      await loop;
      deps.mailer.close();
    },
  };
}
