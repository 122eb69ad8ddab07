import type http from "node:http";
import { closeServer, listenLocal, originOf } from "./http.js";

/** One recorded VK API call: the method and its parameters (form body and query merged). */
export interface VkCall {
  method: string;
  params: Record<string, string>;
  /** When it arrived, epoch ms. */
  at: number;
}

/** A wall post the fake serves through wall.getById (VK post object fields). */
export interface FakePost {
  id: number;
  owner_id: number;
  from_id: number;
  date: number;
  text: string;
}

/** A VK error to answer a method with (`{error: {error_code, error_msg, request_params}}`). */
interface Failure {
  method: string;
  code: number;
  msg: string;
  times: number;
}

/**
 * A local VK API server for tests, speaking VK's wire format: `POST {base}/{method}` with
 * form-encoded (or query) parameters including `access_token` and `v`, answering
 * `{response: ...}` or `{error: {error_code, error_msg, request_params}}` with HTTP 200 as VK
 * does. It records every call, keeps what the bot sent (`messages.send` — deduplicated by
 * `random_id` per peer like VK — and `wall.createComment`, deduplicated by `guid`), can be told
 * to fail a method with any VK error code, serves posts via `wall.getById`, and serves the Bots
 * Long Poll API (`groups.getLongPollServer` and the `a_check` endpoint).
 */
export class FakeVk {
  readonly calls: VkCall[] = [];
  /** Messages actually delivered by messages.send. */
  readonly sent: VkCall[] = [];
  /** Comments actually created by wall.createComment. */
  readonly comments: VkCall[] = [];
  /** Posts served by wall.getById, by `<owner_id>_<id>`. */
  readonly posts = new Map<string, FakePost>();
  /** How long an idle a_check request is held before answering with no updates, ms. */
  holdMs = 100;
  private readonly failures: Failure[] = [];
  /** Long poll history: event number `lpFirst + i` is `lpHistory[i]`; the next event gets `lpTs`. */
  private lpHistory: unknown[] = [];
  private lpFirst = 1;
  private lpWaiters: Array<() => void> = [];
  private lpTs = 1;
  private lpKey = "lp-key-1";
  /** The `failed` code answered to a_check with a key other than {@link lpKey}. */
  private lpStaleKeyFailure = 2;
  /** a_check requests answered so far, with their `ts`. */
  readonly lpChecks: string[] = [];
  private nextId = 1000;
  private readonly randomIds = new Map<string, number>();
  private readonly guids = new Map<string, number>();
  private server?: http.Server;
  /** Pictures served as VK's CDN does (`GET /cdn/<name>`), and the names fetched. */
  private readonly cdn = new Map<string, Buffer>();
  readonly cdnFetches: string[] = [];

  constructor(
    readonly token = "vk1.a.test-community-token",
    readonly groupId = 4242,
  ) {}

  async start(): Promise<void> {
    this.server = await listenLocal((req, res) => void this.handle(req, res));
  }

  private get origin(): string {
    return originOf(this.server!);
  }

  /** `vk.api_base_url` for the bot. */
  get url(): string {
    return `${this.origin}/method`;
  }

  /**
   * Serves a picture on the fake CDN.
   * @returns a `photo` attachment (`{type: "photo", photo: {id, owner_id, access_key, sizes}}`)
   *   whose largest size (`w`) is the picture; the smaller sizes point at missing files
   */
  photo(name: string, bytes: Buffer): { type: "photo"; photo: Record<string, unknown> } {
    this.cdn.set(name, bytes);
    const url = (n: string, t: string) => `${this.origin}/cdn/${n}?size=${t}&quality=96&sign=abc&type=album`;
    return {
      type: "photo",
      photo: {
        id: 457239000 + this.cdn.size,
        owner_id: 501,
        access_key: "k3y",
        date: Math.floor(Date.now() / 1000),
        sizes: [
          { type: "s", width: 75, height: 56, url: url(`${name}-s`, "s") },
          { type: "w", width: 1280, height: 960, url: url(name, "w") },
          { type: "m", width: 130, height: 97, url: url(`${name}-m`, "m") },
        ],
      },
    };
  }

  /**
   * Serves a voice message's audio on the fake CDN (`GET /cdn/<name>.ogg`, and `.mp3`).
   * @returns an `audio_message` attachment (`{type: "audio_message", audio_message: {id,
   *   owner_id, duration, waveform, link_ogg, link_mp3, access_key, transcript?,
   *   transcript_state?}}`), with VK's `transcript` when one is given
   */
  audioMessage(name: string, bytes: Buffer, duration: number, transcript?: string): { type: "audio_message"; audio_message: Record<string, unknown> } {
    this.cdn.set(`${name}.ogg`, bytes);
    this.cdn.set(`${name}.mp3`, bytes);
    return {
      type: "audio_message",
      audio_message: {
        id: 456239000 + this.cdn.size,
        owner_id: 501,
        duration,
        waveform: [0, 3, 7, 12, 7, 3, 0],
        link_ogg: `${this.origin}/cdn/${name}.ogg`,
        link_mp3: `${this.origin}/cdn/${name}.mp3`,
        access_key: "k3y",
        ...(transcript !== undefined ? { transcript, transcript_state: "done" } : {}),
      },
    };
  }

  /** Answers the next `times` calls of `method` with VK error `code`. */
  failNext(method: string, code: number, msg = `injected error ${code}`, times = 1): void {
    this.failures.push({ method, code, msg, times });
  }

  /**
   * Adds a Bots Long Poll event (`{type, object, group_id, event_id, v}`) to the history, as
   * VK does: it gets the next ts, and any a_check from an earlier ts receives it.
   */
  pushLongPoll(...events: unknown[]): void {
    for (const e of events) {
      this.lpHistory.push(e);
      this.lpTs++;
    }
    for (const w of this.lpWaiters.splice(0)) w();
  }

  /** The ts the next event will get (what groups.getLongPollServer answers). */
  get longPollTs(): number {
    return this.lpTs;
  }

  /**
   * Expires the long poll key: a_check with the old key answers `failed: 2` (key expired) or
   * `failed: 3` (information lost) until groups.getLongPollServer gives the new one. Waiting
   * requests are answered at once.
   */
  expireLongPollKey(failed: 2 | 3): void {
    this.lpKey = `lp-key-${Number(this.lpKey.slice(7)) + 1}`;
    this.lpStaleKeyFailure = failed;
    for (const w of this.lpWaiters.splice(0)) w();
  }

  /** Drops the history before the current ts: an a_check from an older ts answers `failed: 1`. */
  forgetLongPollHistory(): void {
    this.lpHistory = [];
    this.lpFirst = this.lpTs;
  }

  /** Calls of one method so far. */
  callsOf(method: string): VkCall[] {
    return this.calls.filter((c) => c.method === method);
  }

  async stop(): Promise<void> {
    for (const w of this.lpWaiters.splice(0)) w();
    await closeServer(this.server);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const url = new URL(req.url ?? "/", this.origin);
    const json = (body: unknown) => void res.writeHead(200, { "content-type": "application/json; charset=utf-8" }).end(JSON.stringify(body));
    if (url.pathname === "/lp") return this.longPoll(url, json);
    if (url.pathname.startsWith("/cdn/")) {
      const name = url.pathname.slice(5);
      this.cdnFetches.push(name);
      const bytes = this.cdn.get(name);
      if (!bytes) return void res.writeHead(404, { "content-type": "text/html" }).end("<h1>404 Not Found</h1>");
      return void res.writeHead(200, { "content-type": "image/jpeg", "content-length": bytes.length }).end(bytes);
    }
    const m = /^\/method\/([A-Za-z]+\.[A-Za-z]+)$/.exec(url.pathname);
    if (!m) {
      res.writeHead(404).end("not found");
      return;
    }
    const method = m[1]!;
    const params: Record<string, string> = Object.fromEntries(url.searchParams);
    const type = String(req.headers["content-type"] ?? "");
    const raw = Buffer.concat(chunks).toString("utf8");
    if (type.includes("application/json") && raw) Object.assign(params, JSON.parse(raw));
    else if (raw) Object.assign(params, Object.fromEntries(new URLSearchParams(raw)));
    this.calls.push({ method, params, at: Date.now() });
    const error = (code: number, msg: string) =>
      json({
        error: {
          error_code: code,
          error_msg: msg,
          request_params: [
            { key: "method", value: method },
            { key: "oauth", value: "1" },
            ...Object.entries(params)
              .filter(([k]) => k !== "access_token")
              .map(([key, value]) => ({ key, value })),
          ],
        },
      });
    if (params.access_token !== this.token) return error(5, "User authorization failed: invalid access_token (4).");
    if (!params.v) return error(8, "Invalid request: v is required");
    const f = this.failures.find((x) => x.method === method && x.times > 0);
    if (f) {
      f.times--;
      return error(f.code, f.msg);
    }
    switch (method) {
      case "groups.getById":
        return json({
          response: { groups: [{ id: this.groupId, name: "Test community", screen_name: `club${this.groupId}`, type: "group", is_closed: 0 }], profiles: [] },
        });
      case "groups.getLongPollServer":
        if (Number(params.group_id) !== this.groupId) return error(100, "One of the parameters specified was missing or invalid: group_id is undefined");
        return json({ response: { key: this.lpKey, server: `${this.origin}/lp`, ts: String(this.lpTs) } });
      case "messages.send": {
        if (!params.peer_id || !params.random_id || !params.message)
          return error(100, "One of the parameters specified was missing or invalid: peer_id, random_id and message are required");
        const key = `${params.peer_id}:${params.random_id}`;
        const known = this.randomIds.get(key);
        if (known !== undefined) return json({ response: known });
        const id = this.nextId++;
        this.randomIds.set(key, id);
        this.sent.push({ method, params, at: Date.now() });
        return json({ response: id });
      }
      case "wall.createComment": {
        if (!params.owner_id || !params.post_id || !params.message)
          return error(100, "One of the parameters specified was missing or invalid: owner_id, post_id and message are required");
        const known = params.guid ? this.guids.get(params.guid) : undefined;
        if (known !== undefined) return json({ response: { comment_id: known, parents_stack: [] } });
        const id = this.nextId++;
        if (params.guid) this.guids.set(params.guid, id);
        this.comments.push({ method, params, at: Date.now() });
        return json({ response: { comment_id: id, parents_stack: params.reply_to_comment ? [Number(params.reply_to_comment)] : [] } });
      }
      case "messages.setActivity":
        if (!params.peer_id || params.type !== "typing")
          return error(100, "One of the parameters specified was missing or invalid: peer_id and type are required");
        return json({ response: 1 });
      case "wall.getById": {
        const items = (params.posts ?? "")
          .split(",")
          .map((k) => this.posts.get(k.trim()))
          .filter((p): p is FakePost => p !== undefined)
          .map((p) => ({ ...p, post_type: "post", comments: { count: 0 } }));
        return json({ response: { items } });
      }
      default:
        return error(3, "Unknown method passed");
    }
  }

  private async longPoll(url: URL, json: (b: unknown) => void): Promise<void> {
    if (url.searchParams.get("act") !== "a_check") return json({ failed: 3 });
    const ts = Number(url.searchParams.get("ts"));
    this.lpChecks.push(String(url.searchParams.get("ts")));
    const keyOk = () => url.searchParams.get("key") === this.lpKey;
    if (keyOk() && Number.isInteger(ts) && ts >= this.lpFirst && ts >= this.lpTs) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, this.holdMs);
        this.lpWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    // Checked when answering, as a key can expire while a request waits.
    if (!keyOk()) return json({ failed: this.lpStaleKeyFailure });
    if (!Number.isInteger(ts) || ts < this.lpFirst) return json({ failed: 1, ts: String(this.lpTs) });
    json({ ts: String(this.lpTs), updates: this.lpHistory.slice(ts - this.lpFirst) });
  }
}

/** A response of the bot's callback endpoint. */
export interface CallbackResponse {
  status: number;
  text: string;
}

/**
 * POSTs a body to the bot's Callback API endpoint as VK does (JSON, optional `X-Retry-Counter`).
 * `body` may be a string to send malformed JSON.
 */
export async function postCallback(url: string, body: unknown, headers: Record<string, string> = {}): Promise<CallbackResponse> {
  const r = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: r.status, text: await r.text() };
}

let eventSeq = 0;

/** A unique VK-style `event_id` (40 hex characters). */
export function eventId(): string {
  return (Date.now().toString(16) + (++eventSeq).toString(16).padStart(8, "0") + "0".repeat(40)).slice(0, 40);
}

/** Common envelope of a Callback / Long Poll event. */
function envelope(type: string, object: unknown, groupId: number, secret?: string) {
  return { group_id: groupId, type, event_id: eventId(), v: "5.199", object, ...(secret !== undefined ? { secret } : {}) };
}

/** A `message_new` event (`object.message` + `object.client_info`, API 5.199). */
export function messageNew(o: { groupId: number; peerId: number; text: string; id: number; secret?: string; fromId?: number; attachments?: unknown[] }) {
  return envelope(
    "message_new",
    {
      message: {
        date: Math.floor(Date.now() / 1000),
        from_id: o.fromId ?? o.peerId,
        id: o.id,
        out: 0,
        version: 10000 + o.id,
        attachments: o.attachments ?? [],
        conversation_message_id: o.id,
        fwd_messages: [],
        important: false,
        is_hidden: false,
        peer_id: o.peerId,
        random_id: 0,
        text: o.text,
      },
      client_info: {
        button_actions: ["text", "vkpay", "open_app", "location", "open_link", "callback", "intent_subscribe", "intent_unsubscribe"],
        keyboard: true,
        inline_keyboard: true,
        carousel: true,
        lang_id: 0,
      },
    },
    o.groupId,
    o.secret,
  );
}

/** A `wall_reply_new` event (a comment under a post). */
export function wallReplyNew(o: {
  groupId: number;
  postId: number;
  commentId: number;
  fromId: number;
  text: string;
  secret?: string;
  attachments?: unknown[];
}) {
  return envelope(
    "wall_reply_new",
    {
      id: o.commentId,
      from_id: o.fromId,
      post_id: o.postId,
      owner_id: -o.groupId,
      post_owner_id: -o.groupId,
      parents_stack: [],
      date: Math.floor(Date.now() / 1000),
      text: o.text,
      thread: { count: 0 },
      ...(o.attachments ? { attachments: o.attachments } : {}),
    },
    o.groupId,
    o.secret,
  );
}

/** A `wall_post_new` event (a post on the community's wall). */
export function wallPostNew(o: { groupId: number; postId: number; text: string; date: number; secret?: string }) {
  return envelope(
    "wall_post_new",
    {
      id: o.postId,
      owner_id: -o.groupId,
      from_id: -o.groupId,
      created_by: 1,
      date: o.date,
      marked_as_ads: 0,
      post_type: "post",
      text: o.text,
      can_edit: 1,
      can_delete: 1,
      comments: { count: 0 },
    },
    o.groupId,
    o.secret,
  );
}
