import type { Readable } from "node:stream";
import type { BotConfig } from "../config/schema.js";
import { withRetries, type RetryDecision } from "../lib/retry.js";
import { BotsError } from "../errors.js";
import { isoDateTime, wallParts } from "../lib/zoned.js";

/** Sending an e-mail failed (after retries). `status` is the SMTP reply code when the server gave one. */
export class MailError extends BotsError {
  readonly status?: number;
  constructor(code: string, message: string, options: { cause?: unknown; hint?: string; status?: number } = {}) {
    super(code, message, options);
    this.status = options.status;
  }
}

/** One e-mail. `html` may be a stream (a large report is never held in memory whole). */
export interface Mail {
  to: string[];
  subject: string;
  html: string | Readable;
  /** Plain-text alternative. */
  text?: string;
}

/** Something that sends mail; the SMTP {@link Mailer} in production and tests alike. */
export interface MailSender {
  /**
   * @returns the message id the server accepted
   * @throws MailError after retries
   */
  send(mail: Mail): Promise<string>;
  close(): void;
}

/** Tuning of {@link Mailer} (tests shorten the back-off). */
export interface MailerOptions {
  /** Retries of one send on connection failures and 4xx replies. @defaultValue 2 */
  retries?: number;
  /** First back-off, ms. @defaultValue 1000 */
  backoffMs?: number;
}

/**
 * SMTP through nodemailer, configured by the bot's `smtp:` section. nodemailer is imported on
 * first use. One connection per message (no pool): mails are rare (leads, a daily report).
 */
export class Mailer implements MailSender {
  private transport?: Promise<import("nodemailer").Transporter>;

  constructor(
    private readonly smtp: NonNullable<BotConfig["smtp"]>,
    private readonly options: MailerOptions = {},
  ) {}

  private transporter(): Promise<import("nodemailer").Transporter> {
    const s = this.smtp;
    this.transport ??= import("nodemailer").then(({ default: nodemailer }) =>
      nodemailer.createTransport({
        host: s.host,
        port: s.port ?? (s.secure ? 465 : 587),
        secure: s.secure,
        ...(s.user !== undefined ? { auth: { user: s.user, pass: s.password ?? "" } } : {}),
        connectionTimeout: s.timeout_s * 1000,
        greetingTimeout: s.timeout_s * 1000,
        socketTimeout: s.timeout_s * 1000,
      }),
    );
    return this.transport;
  }

  async send(mail: Mail): Promise<string> {
    const t = await this.transporter();
    // A stream can be read once: only a string body is retried here; the caller retries streams.
    const retries = typeof mail.html === "string" ? (this.options.retries ?? 2) : 0;
    try {
      const info = await withRetries(
        async () => {
          try {
            // The subject is one line whatever the caller built (a header never gets a break).
            return await t.sendMail({
              from: this.smtp.from,
              to: mail.to,
              subject: oneLine(mail.subject),
              html: mail.html,
              ...(mail.text ? { text: mail.text } : {}),
            });
          } catch (error) {
            throw toMailError(error, this.smtp.host);
          }
        },
        { retries, baseMs: this.options.backoffMs ?? 1000, classify: classifySmtpError },
      );
      return String((info as { messageId?: string }).messageId ?? "");
    } catch (error) {
      throw toMailError(error, this.smtp.host);
    }
  }

  close(): void {
    void this.transport?.then((t) => t.close()).catch(() => undefined);
  }
}

/**
 * SMTP failures worth retrying: no connection, timeouts, and 4xx replies (RFC 5321 transient);
 * 5xx replies and refused logins are permanent.
 */
export function classifySmtpError(error: unknown): RetryDecision {
  const status = (error as MailError)?.status;
  if (status !== undefined) return { retry: status >= 400 && status < 500 };
  return { retry: (error as MailError)?.code !== "MAIL_AUTH" };
}

function toMailError(error: unknown, host: string): MailError {
  if (error instanceof MailError) return error;
  const e = error as { code?: string; responseCode?: number; response?: string; message?: string };
  if (e?.code === "EAUTH")
    return new MailError("MAIL_AUTH", `SMTP server ${host} refused the login: ${e.response ?? e.message ?? ""}`.trim(), {
      cause: error,
      status: e.responseCode,
      hint: "check smtp.user and smtp.password",
    });
  if (typeof e?.responseCode === "number") {
    return new MailError("MAIL_REJECTED", `SMTP server ${host} answered ${e.responseCode}: ${(e.response ?? e.message ?? "").slice(0, 300)}`, {
      cause: error,
      status: e.responseCode,
      hint: e.responseCode >= 500 ? "check smtp.from and the recipients" : undefined,
    });
  }
  return new MailError("MAIL_UNAVAILABLE", `SMTP server ${host} unreachable: ${e?.message ?? String(error)}`, {
    cause: error,
    hint: "check smtp.host, smtp.port and smtp.secure",
  });
}

/** Bidi embedding, override and isolate controls (U+202A–U+202E, U+2066–U+2069): they reorder what a reader sees. */
const BIDI = /[\u202a-\u202e\u2066-\u2069]/g;
/** Line breaks of every kind: CR LF, CR, LF, VT, FF, NEL (U+0085), U+2028, U+2029. */
const BREAKS = /\r\n|[\r\n\u000b\u000c\u0085\u2028\u2029]/g;

/**
 * Text from a customer made one line for a header or a field (`Имя: …`): line breaks become
 * spaces and bidi controls are dropped, so it cannot start a forged line (`Bcc: …`) or show its
 * characters in another order.
 */
export function oneLine(text: string): string {
  return text.replace(BIDI, "").replace(BREAKS, " ").replace(/ {2,}/g, " ").trim();
}

/**
 * Multi-line text from a customer for a plain-text body: bidi controls dropped, every break
 * made `\n` and each continuation line indented by `indent`, so no line of it starts at the
 * margin where the body's own `Field: value` lines are.
 */
export function indentedLines(text: string, indent = "    "): string {
  return text.replace(BIDI, "").replace(BREAKS, `\n${indent}`);
}

/** Escapes text for HTML element content and attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

/**
 * Text from a customer for HTML element content: escaped, bidi controls dropped and every kind of
 * line break (see BREAKS) made `<br>`, so it shows as written, in the order written.
 */
export function htmlLines(text: string): string {
  return escapeHtml(text.replace(BIDI, "")).replace(BREAKS, "<br>");
}

/**
 * Formats epoch ms in an IANA time zone as `YYYY-MM-DD HH:MM`.
 * @throws RangeError for an unknown zone
 */
export function formatLocal(ms: number, timezone: string): string {
  return isoDateTime(wallParts(ms, timezone)).slice(0, 16);
}
