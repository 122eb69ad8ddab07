import type { Logger } from "pino";
import type { BotConfig } from "../config/schema.js";
import type { Middleware } from "../lib/compose.js";
import type { Feature } from "../core/pipeline.js";
import { sleep as realSleep } from "../lib/retry.js";
import type { AcceptedUpdates, PipelineContext } from "../core/types.js";
import { describeError } from "../errors.js";
import type { ToolDefinition } from "../llm/client.js";
import { escapeHtml, formatLocal, htmlLines, indentedLines, Mailer, oneLine, type MailSender } from "../notify/email.js";
import type { Store } from "../storage/index.js";
import { leadDialog, type DialogTurn, type LeadFields, type LeadRow } from "../storage/leads.js";
import type { ToolEffectKey } from "../storage/tool-effects.js";
import type { LeadsConfig } from "../config/features.js";

/** Dependencies of the leads feature (see `FeatureDeps`). */
export interface LeadsDeps {
  store: Store;
  logger: Logger;
  /** Clock, epoch ms UTC. */
  now: () => number;
  /** Waits by that clock (the retry loop). @defaultValue setTimeout */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** The operator's mail sender; null when the bot has no `smtp:` section. */
  mailer: MailSender | null;
}

/** What the leads feature takes from channels: a contact shared with the button (or by hand) is saved as the lead's phone. */
export const LEADS_ACCEPTS: AcceptedUpdates = { contacts: true };

/** The leads feature: a {@link Feature} plus a way to send pending e-mails now. */
export interface LeadsFeature extends Feature {
  /**
   * Sends the operator e-mail of every lead not yet notified (one pass; concurrent calls share
   * it). A failed e-mail leaves the lead unnotified for the next pass.
   * @returns how many e-mails went out
   */
  flush(): Promise<number>;
}

/** Most dialog turns stored with a lead. */
const DIALOG_TURNS = 200;

/**
 * Normalises a phone number to `+` and digits (E.164 shape): spaces, dashes, dots and
 * brackets are dropped; a Russian trunk-prefixed `8XXXXXXXXXX` (11 digits) becomes `+7XXXXXXXXXX`.
 * @returns the number, or null when it is not 7-15 digits
 */
export function normalisePhone(raw: string): string | null {
  const compact = raw.trim().replace(/[\s\-().\u00a0]/g, "");
  if (!/^\+?\d+$/.test(compact)) return null;
  let digits = compact.replace(/^\+/, "");
  if (!compact.startsWith("+") && digits.length === 11 && digits.startsWith("8")) digits = `7${digits.slice(1)}`;
  if (digits.length < 7 || digits.length > 15) return null;
  return `+${digits}`;
}

/** True for an address of the shape `local@domain.tld` (syntax only). */
export function isEmail(raw: string): boolean {
  return /^[^\s@<>",;]+@[^\s@<>",;]+\.[A-Za-z]{2,}$/.test(raw.trim());
}

/**
 * `features.leads` (docs/sales.md): the `save_lead` tool stores the customer's contact
 * details with the dialog so far (one lead per thread key; a repeat call updates it), and the
 * operator gets an HTML e-mail over SMTP. A failed e-mail never loses the lead: `notified_ms`
 * stays null and a retry loop (started with the bot) sends it later. On Telegram the model may
 * also call `request_contact` to show a "share my phone" button; a shared contact
 * (`IncomingMessage.contact`) fills the lead in the gate, before the model answers.
 */
export function leadsFeature(bot: BotConfig, cfg: LeadsConfig, deps: LeadsDeps): LeadsFeature {
  const log = deps.logger.child({ feature: "leads" });
  const sleep = deps.sleep ?? realSleep;
  const abort = new AbortController();
  let loop: Promise<void> | undefined;
  let pass: Promise<number> | undefined;
  let again = false;
  const kicks = new Set<Promise<unknown>>();

  const dialogOf = async (ctx: PipelineContext): Promise<DialogTurn[]> => {
    const history = await deps.store.messages.history(bot.name, ctx.msg.threadKey, ctx.id!, DIALOG_TURNS);
    return [
      ...history.map((t) => ({ role: t.role, text: t.text, at_ms: t.created_ms })),
      { role: "user" as const, text: ctx.msg.text, at_ms: ctx.msg.receivedMs },
    ];
  };

  const save = async (ctx: PipelineContext, fields: LeadFields, effect?: ToolEffectKey) => {
    const m = ctx.msg;
    const res = await deps.store.leads.upsert({
      bot: bot.name,
      thread_key: m.threadKey,
      chat_id: m.chatId,
      user_id: m.userId,
      user_name: m.userName,
      message_id: ctx.id ?? null,
      dialog: await dialogOf(ctx),
      ...fields,
      effect,
    });
    if (res.repeated) {
      log.info({ lead_id: res.lead.id, thread_key: m.threadKey, msg_id: ctx.id }, "save_lead repeated for the same message; nothing stored again");
      return res;
    }
    log.info(
      { lead_id: res.lead.id, thread_key: m.threadKey, msg_id: ctx.id, created: res.created, changed: res.changed },
      res.created ? "lead saved" : "lead updated",
    );
    if (res.changed) kick();
    return res;
  };

  /** Starts a send pass without waiting for it (the answer must not wait for SMTP). */
  const kick = () => {
    if (!deps.mailer || cfg.notify_to.length === 0) return;
    const p = flush().catch((e) => log.error({ err: e }, "lead e-mail pass failed"));
    kicks.add(p);
    void p.finally(() => kicks.delete(p));
  };

  const flush = (): Promise<number> => {
    if (pass) {
      again = true;
      return pass;
    }
    pass = (async () => {
      let sent = 0;
      do {
        again = false;
        sent += await sendPending();
      } while (again && !abort.signal.aborted);
      return sent;
    })().finally(() => {
      pass = undefined;
    });
    return pass;
  };

  const sendPending = async (): Promise<number> => {
    if (!deps.mailer || cfg.notify_to.length === 0) return 0;
    let sent = 0;
    for (const lead of await deps.store.leads.unnotified(bot.name, cfg.required)) {
      try {
        const id = await deps.mailer.send({ to: cfg.notify_to, ...leadMail(bot, lead) });
        await deps.store.leads.markNotified(lead.id, lead.updated_ms);
        log.info({ lead_id: lead.id, message_id: id }, "lead e-mailed to the operator");
        sent++;
      } catch (error) {
        await deps.store.leads.markFailed(lead.id, describeError(error)).catch((e) => log.error({ err: e }, "could not record the failed e-mail"));
        log.warn({ err: error, lead_id: lead.id, retry_in_s: cfg.retry_interval_s }, "lead e-mail failed; kept for the next attempt");
      }
    }
    return sent;
  };

  const saveLead: ToolDefinition<PipelineContext> = {
    name: "save_lead",
    description: cfg.tool_description,
    parameters: {
      type: "object",
      properties: {
        name: { type: "string", description: "the customer's name" },
        phone: { type: "string", description: "phone number with country code, e.g. +79001234567" },
        email: { type: "string", description: "e-mail address" },
        note: { type: "string", description: "what the customer wants: product, quantity, time, anything else useful to the manager" },
      },
      required: cfg.required,
      additionalProperties: false,
    },
    async run(args, ctx) {
      const given: { name?: string; phone?: string; email?: string; note?: string } = {};
      const problems: string[] = [];
      for (const k of ["name", "phone", "email", "note"] as const) {
        const v = args[k];
        if (v === undefined || v === null) continue;
        if (typeof v !== "string") {
          problems.push(`${k} must be a string`);
          continue;
        }
        if (v.trim()) given[k] = v.trim().slice(0, k === "note" ? 4000 : 255);
      }
      if (given.phone !== undefined) {
        const phone = normalisePhone(given.phone);
        if (phone) given.phone = phone;
        else problems.push(`phone '${given.phone}' is not a phone number (7-15 digits with the country code, e.g. +79001234567)`);
      }
      if (given.email !== undefined && !isEmail(given.email)) problems.push(`email '${given.email}' is not an e-mail address`);
      const stored = await deps.store.leads.forThread(bot.name, ctx.msg.threadKey);
      const missing = cfg.required.filter((k) => given[k] === undefined && !stored?.[k]);
      if (missing.length) problems.push(`missing ${missing.join(", ")}`);
      if (problems.length) {
        ctx.log.info({ problems }, "save_lead refused; the model is told");
        return `error: lead not saved: ${problems.join("; ")}. Ask the customer for the correct details, then call save_lead again.`;
      }
      // Keyed by the incoming message and the normalised fields: a looping or retried model, or
      // a replay of the message, does not store or e-mail the lead again.
      const effect = ctx.id === undefined ? undefined : { bot: bot.name, message_id: ctx.id, tool: "save_lead", args: given };
      const { lead, repeated } = await save(ctx, given, effect);
      if (repeated)
        return `ok: already saved as lead #${lead.id} (this call was made before for this message; nothing changed). Do not call save_lead again; now answer the customer.`;
      return `ok: lead #${lead.id} saved (name: ${lead.name ?? "-"}, phone: ${lead.phone ?? "-"}, email: ${lead.email ?? "-"}). A manager will contact the customer. Now answer the customer.`;
    },
  };

  const requestContact: ToolDefinition<PipelineContext> = {
    name: "request_contact",
    description:
      "Show the customer a button that shares their Telegram phone number with one tap. Call it when you ask for the phone; then write your question as usual.",
    parameters: { type: "object", properties: {}, additionalProperties: false },
    async run(_args, ctx) {
      // Sent with this answer: the channel adds the keyboard under it.
      ctx.reply.requestContact = cfg.contact_button_text;
      return `ok: the button "${cfg.contact_button_text}" will be shown under your answer.`;
    },
  };

  const gate: Middleware<PipelineContext> = async (ctx, next) => {
    const c = ctx.msg.contact;
    if (c) {
      const phone = normalisePhone(c.phone);
      if (phone) {
        try {
          const stored = await deps.store.leads.forThread(bot.name, ctx.msg.threadKey);
          await save(ctx, { phone, ...(stored?.name || !c.name ? {} : { name: c.name }) });
        } catch (error) {
          // The model still answers; the contact is in the stored message for the operator.
          ctx.log.error({ err: error }, "shared contact could not be saved as a lead");
        }
      } else ctx.log.info({ phone: c.phone }, "shared contact has no usable phone");
    }
    await next();
  };

  const tools = [saveLead, ...(bot.channel === "tg" && cfg.contact_button ? [requestContact] : [])];
  return {
    name: "leads",
    gate,
    tools,
    accepts: LEADS_ACCEPTS,
    flush,
    start() {
      if (!deps.mailer || cfg.notify_to.length === 0) return;
      loop = (async () => {
        // Leads left unsent by an earlier run go out first.
        for (;;) {
          await flush().catch((e) => log.error({ err: e }, "lead e-mail pass failed"));
          await sleep(cfg.retry_interval_s * 1000, abort.signal);
          if (abort.signal.aborted) return;
        }
      })();
    },
    async stop() {
      abort.abort();
      await loop;
      await Promise.all([...kicks]);
      deps.mailer?.close();
    },
  };
}

/**
 * The operator e-mail of a lead: subject with the bot and the customer's name, the contact
 * fields and the dialog, everything user-written HTML-escaped; times in the bot's time zone.
 */
export function leadMail(bot: Pick<BotConfig, "name" | "timezone">, lead: LeadRow): { subject: string; html: string; text: string } {
  const who = lead.name ?? lead.user_name ?? lead.phone ?? "без имени";
  const subject = oneLine(`[${bot.name}] Заявка: ${who}`);
  // Each field on one line, in the text part and the HTML alike (see oneLine).
  const fields: Array<[string, string | null]> = (
    [
      ["Имя", lead.name],
      ["Телефон", lead.phone],
      ["E-mail", lead.email],
      ["Комментарий", lead.note],
      ["Пользователь", [lead.user_name, lead.user_id ? `id ${lead.user_id}` : null].filter(Boolean).join(", ") || null],
      ["Диалог", lead.thread_key],
      ["Создана", `${formatLocal(lead.created_ms, bot.timezone)} ${bot.timezone}`],
    ] as Array<[string, string | null]>
  ).map(([k, v]) => [k, v === null ? null : oneLine(v) || null]);
  const dialog = leadDialog(lead);
  const row = ([k, v]: [string, string | null]) =>
    `<tr><th align="left">${escapeHtml(k)}</th><td data-field="${escapeHtml(k)}">${v ? escapeHtml(v) : "—"}</td></tr>`;
  const turn = (t: DialogTurn) =>
    `<div class="turn ${t.role}"><b>${t.role === "user" ? "Клиент" : "Бот"}</b> <small>${escapeHtml(formatLocal(t.at_ms, bot.timezone))}</small><br>${htmlLines(t.text)}</div>`;
  const html = [
    `<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(subject)}</title></head><body>`,
    `<h2>Заявка из бота ${escapeHtml(bot.name)}</h2>`,
    `<table class="lead">${fields.map(row).join("")}</table>`,
    `<h3>Диалог</h3>`,
    dialog.map(turn).join("\n"),
    `</body></html>`,
  ].join("\n");
  const text = [
    ...fields.map(([k, v]) => `${k}: ${v ?? "—"}`),
    "",
    ...dialog.map((t) => `${t.role === "user" ? "Клиент" : "Бот"}: ${indentedLines(t.text)}`),
  ].join("\n");
  return { subject, html, text };
}

/** The mail sender of a bot from its `smtp:` section, or null without one. */
export function mailerFor(bot: Pick<BotConfig, "smtp">): MailSender | null {
  return bot.smtp ? new Mailer(bot.smtp) : null;
}
