import http from "node:http";
import type { AddressInfo } from "node:net";

/** The body Telegram answers to a second `getUpdates` consumer of a token (HTTP 409). */
export const CONFLICT_DESCRIPTION = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running";

/** One 409 a proxy answered: which instance's proxy, for which token, when (local ms). */
export interface ConflictEvent {
  instance: string;
  token: string;
  at: number;
}

/** One `sendMessage` that went through an instance's proxy (Bot API sendMessage parameters). */
export interface SentMessage {
  instance: string;
  token: string;
  chat_id: number;
  text: string;
  at: number;
}

/** A Bot API update as getUpdates returns it (only `update_id` matters here). */
type Update = { update_id: number } & Record<string, unknown>;

/**
 * The Bot API as several instances see it, shared by their proxies (one test's registry): who
 * holds each token's `getUpdates`, the 409s answered, the sends, and each token's unconfirmed
 * updates.
 *
 * A token is held by the proxy whose `getUpdates` for it is in flight or ended less than
 * `holdMs` ago; another proxy's `getUpdates` then gets Telegram's 409. Updates follow Telegram's
 * offset rule (Bot API getUpdates: "an update is considered confirmed as soon as getUpdates is
 * called with an offset higher than its update_id"), which the emulator lacks (it marks updates
 * read once returned): an instance killed between fetching and recording leaves them for the next
 * poller, as Telegram does.
 */
export class BotApiCluster {
  /** How long after its last `getUpdates` an instance keeps a token, ms. */
  holdMs = 1000;
  readonly conflicts: ConflictEvent[] = [];
  readonly sent: SentMessage[] = [];
  private readonly holders = new Map<string, { instance: string; inFlight: number; endedAt: number }>();
  private readonly unconfirmed = new Map<string, Update[]>();

  /** @param target the emulator's API root (`http://127.0.0.1:PORT`) */
  constructor(readonly target: string) {}

  /** 409s answered to `instance` (any instance when omitted) at or after `since` (local ms). */
  conflictsOf(instance?: string, since = 0): ConflictEvent[] {
    return this.conflicts.filter((c) => (instance === undefined || c.instance === instance) && c.at >= since);
  }

  /** Takes the token for `instance`, or records a conflict and returns false. */
  acquire(token: string, instance: string): boolean {
    const h = this.holders.get(token);
    if (h && h.instance !== instance && (h.inFlight > 0 || Date.now() - h.endedAt < this.holdMs)) {
      this.conflicts.push({ instance, token, at: Date.now() });
      return false;
    }
    if (h?.instance === instance) h.inFlight++;
    else this.holders.set(token, { instance, inFlight: 1, endedAt: 0 });
    return true;
  }

  release(token: string, instance: string): void {
    const h = this.holders.get(token);
    if (h?.instance !== instance) return;
    h.inFlight--;
    h.endedAt = Date.now();
  }

  /**
   * getUpdates with Telegram's offset rule over the emulator: drains the emulator's new updates
   * into the token's unconfirmed list, confirms those below `offset`, returns the rest.
   */
  async getUpdates(token: string, offset: number): Promise<Update[]> {
    const r = await fetch(`${this.target}/bot${token}/getUpdates`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    const fresh = ((await r.json()) as { result: Update[] }).result;
    const list = [...(this.unconfirmed.get(token) ?? []), ...fresh].filter((u) => !(offset > 0 && u.update_id < offset));
    this.unconfirmed.set(token, list);
    return list;
  }
}

/**
 * An instance's Bot API: an HTTP proxy on 127.0.0.1 (port 0) in front of the emulator whose
 * `getUpdates` follows `cluster` (409 Conflict for a token another instance's proxy serves,
 * Telegram's offsets) and which records every `sendMessage`. Other calls are forwarded.
 * `opts.keepAliveMs`: how long an idle client connection is kept, ms (Node's default 5000).
 * `opts.afterSend`: awaited after the emulator took a `sendMessage` and before its reply goes
 * back to the instance (a test pauses the instance there: sent, not yet recorded).
 */
export async function startConflictProxy(
  cluster: BotApiCluster,
  instance: string,
  opts: { keepAliveMs?: number; afterSend?: (sent: SentMessage) => Promise<void> | void } = {},
): Promise<{ url: string; stop(): Promise<void> }> {
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks);
    const [, tokenPart, method] = /^\/bot([^/]+)\/([^/?]+)/.exec(req.url ?? "") ?? [];
    const token = tokenPart ?? "";
    let body: Record<string, unknown> = {};
    try {
      if (raw.length && String(req.headers["content-type"]).includes("json")) body = JSON.parse(raw.toString("utf8")) as Record<string, unknown>;
    } catch {
      body = {};
    }
    const reply = (status: number, payload: unknown) => {
      if (!res.headersSent && !res.destroyed) res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(payload));
    };
    try {
      if (method === "getUpdates") {
        if (!cluster.acquire(token, instance)) return reply(409, { ok: false, error_code: 409, description: CONFLICT_DESCRIPTION });
        try {
          return reply(200, { ok: true, result: await cluster.getUpdates(token, Number(body.offset ?? 0)) });
        } finally {
          cluster.release(token, instance);
        }
      }
      const r = await fetch(cluster.target + req.url, {
        method: req.method,
        headers: { "content-type": req.headers["content-type"] ?? "application/json" },
        body: req.method === "GET" ? undefined : raw,
      });
      const answer = Buffer.from(await r.arrayBuffer());
      if (method === "sendMessage" && r.ok) {
        const sent = { instance, token, chat_id: Number(body.chat_id), text: String(body.text), at: Date.now() };
        cluster.sent.push(sent);
        await opts.afterSend?.(sent);
      }
      res.writeHead(r.status, { "content-type": r.headers.get("content-type") ?? "application/json" }).end(answer);
    } catch {
      // The emulator stopped under a call in flight (test teardown): answer as a gateway would.
      reply(502, { ok: false, error_code: 502, description: "Bad Gateway" });
    }
  });
  // Node closes a keep-alive connection idle for 5 s by default; a client sending on it in that
  // instant sees the request fail after it was written. Benches that pause keep them longer.
  if (opts.keepAliveMs !== undefined) server.keepAliveTimeout = opts.keepAliveMs;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
