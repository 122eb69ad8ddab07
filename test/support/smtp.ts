import type { AddressInfo } from "node:net";
import { SMTPServer } from "smtp-server";

/** One message the SMTP server accepted, decoded enough for assertions. */
export interface ReceivedMail {
  /** Envelope sender (MAIL FROM). */
  from: string;
  /** Envelope recipients (RCPT TO). */
  to: string[];
  /** Login used (AUTH), if any. */
  user?: string;
  raw: string;
  /** Headers, lower-case names, RFC 2047 words decoded. */
  headers: Record<string, string>;
  subject: string;
  /** The text/html part, transfer encoding undone. */
  html: string;
  /** The text/plain part, transfer encoding undone. */
  text: string;
}

/**
 * A real SMTP server (smtp-server from npm) on 127.0.0.1 port 0 for tests: plain SMTP with
 * AUTH PLAIN/LOGIN and no STARTTLS, accepts every message and decodes it. `refuse` makes it
 * answer new connections with an SMTP error reply (421 = service not available), the way a
 * server that is down for maintenance does.
 */
/** The bot YAML `smtp:` section for a sink on `port` (password from `${SMTP_PASSWORD}`, user `bots`). */
export function smtpYaml(port: number): string[] {
  return ["smtp:", "  host: 127.0.0.1", `  port: ${port}`, "  user: bots", "  password: ${SMTP_PASSWORD}", "  from: Bots <bots@example.com>", "  timeout_s: 5"];
}

export class SmtpSink {
  readonly mails: ReceivedMail[] = [];
  /** Connections refused so far. */
  refused = 0;
  /** When set, each new connection gets this reply and is closed. */
  refuse: { code: number; message: string } | null = null;
  private server?: SMTPServer;

  constructor(readonly credentials: { user: string; pass: string } = { user: "bots", pass: "smtp-secret-pass" }) {}

  async start(): Promise<number> {
    this.server = new SMTPServer({
      secure: false,
      disabledCommands: ["STARTTLS"],
      allowInsecureAuth: true,
      authOptional: false,
      logger: false,
      disableReverseLookup: true,
      onConnect: (_session, cb) => {
        if (!this.refuse) return cb();
        this.refused++;
        cb(Object.assign(new Error(this.refuse.message), { responseCode: this.refuse.code }));
      },
      onAuth: (auth, _session, cb) => {
        if (auth.username === this.credentials.user && auth.password === this.credentials.pass) return cb(null, { user: auth.username });
        cb(Object.assign(new Error("Invalid username or password"), { responseCode: 535 }));
      },
      onData: (stream, session, cb) => {
        const chunks: Buffer[] = [];
        stream.on("data", (c: Buffer) => chunks.push(c));
        stream.on("end", () => {
          const raw = Buffer.concat(chunks).toString("utf8");
          const env = session.envelope;
          this.mails.push({
            ...decodeMail(raw),
            raw,
            from: env.mailFrom ? env.mailFrom.address : "",
            to: env.rcptTo.map((r) => r.address),
            user: session.user as string | undefined,
          });
          cb();
        });
      },
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    return this.port;
  }

  get port(): number {
    return (this.server as unknown as { server: { address(): AddressInfo } }).server.address().port;
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }

  /**
   * Waits until at least `n` mails arrived.
   * @throws Error saying how many arrived when `timeoutMs` passes
   */
  async waitFor(n: number, timeoutMs = 10_000): Promise<ReceivedMail[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.mails.length < n) {
      if (Date.now() > deadline) throw new Error(`expected ${n} mails within ${timeoutMs} ms, got ${this.mails.length}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return this.mails;
  }
}

/** Decodes headers and the text/html and text/plain parts of a MIME message (RFC 2045-2047). */
export function decodeMail(raw: string): Omit<ReceivedMail, "from" | "to" | "user" | "raw"> {
  const { headers, body } = splitPart(raw);
  const out = { headers, subject: headers.subject ?? "", html: "", text: "" };
  collect(headers, body, out);
  return out;
}

function collect(headers: Record<string, string>, body: string, out: { html: string; text: string }): void {
  const type = headers["content-type"] ?? "text/plain";
  const boundary = /boundary="?([^";]+)"?/i.exec(type)?.[1];
  if (/^multipart\//i.test(type) && boundary) {
    const parts = body.split(`--${boundary}`).slice(1);
    for (const p of parts) {
      if (p.startsWith("--")) break;
      const sub = splitPart(p.replace(/^\r?\n/, ""));
      collect(sub.headers, sub.body, out);
    }
    return;
  }
  const decoded = decodeBody(body, headers["content-transfer-encoding"] ?? "7bit");
  if (/^text\/html/i.test(type)) out.html += decoded;
  else if (/^text\/plain/i.test(type)) out.text += decoded;
}

function splitPart(raw: string): { headers: Record<string, string>; body: string } {
  const idx = raw.search(/\r?\n\r?\n/);
  const head = idx < 0 ? raw : raw.slice(0, idx);
  const body = idx < 0 ? "" : raw.slice(idx).replace(/^\r?\n\r?\n/, "");
  const headers: Record<string, string> = {};
  for (const line of head.replace(/\r?\n[ \t]+/g, " ").split(/\r?\n/)) {
    const c = line.indexOf(":");
    if (c > 0) headers[line.slice(0, c).trim().toLowerCase()] = decodeWords(line.slice(c + 1).trim());
  }
  return { headers, body };
}

function decodeBody(body: string, encoding: string): string {
  const e = encoding.toLowerCase();
  if (e === "base64") return Buffer.from(body.replace(/\s+/g, ""), "base64").toString("utf8");
  if (e === "quoted-printable") return qp(body.replace(/=\r?\n/g, ""));
  return body;
}

function qp(s: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === "=" && /^[0-9A-F]{2}$/i.test(s.slice(i + 1, i + 3))) {
      bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(...Buffer.from(s[i]!, "utf8"));
  }
  return Buffer.from(bytes).toString("utf8");
}

/** RFC 2047 encoded words (`=?UTF-8?B?...?=`, `=?UTF-8?Q?...?=`); adjacent words join without space. */
function decodeWords(v: string): string {
  return v
    .replace(/(\?=)\s+(=\?)/g, "$1$2")
    .replace(/=\?([^?]+)\?([BQ])\?([^?]*)\?=/gi, (_m, _cs: string, enc: string, data: string) =>
      enc.toUpperCase() === "B" ? Buffer.from(data, "base64").toString("utf8") : qp(data.replace(/_/g, " ")),
    );
}
