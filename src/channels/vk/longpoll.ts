import type { Logger } from "pino";
import { sleep } from "../../lib/retry.js";
import type { VkEvent } from "./translate.js";

/** What `groups.getLongPollServer` answers (Bots Long Poll API): the a_check URL, its key and the current `ts`. */
export interface LongPollServer {
  server: string;
  key: string;
  ts: string;
}

/** Dependencies and tuning of {@link VkLongPoll}. */
export interface VkLongPollOptions {
  /** groups.getLongPollServer (with the caller's API retries). @throws ChannelError */
  getServer: () => Promise<LongPollServer>;
  /**
   * Records one event; resolves once it is recorded with a positive result: true to move past it.
   * Anything else (false, a throw of any type) keeps the `ts` before it and retries after a pause.
   */
  handle: (event: VkEvent) => Promise<boolean>;
  /** The stored `ts` (cursors table), or undefined on the first run. */
  loadTs: () => Promise<string | undefined>;
  /** Stores the `ts` after the events before it are recorded. */
  saveTs: (ts: string) => Promise<void>;
  logger: Logger;
  /** a_check `wait`, seconds (VK allows up to 90). @defaultValue 25 */
  waitS?: number;
  /** First back-off after a failure, ms; doubles up to 30 s. @defaultValue 3000 */
  backoffMs?: number;
}

/** Longest back-off between attempts, ms. */
const MAX_BACKOFF_MS = 30_000;
/** Consecutive a_check failures after which a new server and key are asked for. */
const REFRESH_AFTER_FAILURES = 3;

/**
 * Bots Long Poll loop that acknowledges only what is recorded: every event of a batch is
 * recorded in order before the batch's new `ts` is used or stored, so a stop or a crash at any
 * point loses nothing (the batch is fetched again from the stored `ts`; dedupe drops what was
 * recorded already). VK's `failed` answers: 1 → continue from the given `ts` (events older than
 * VK's history are lost; logged), 2 → new key, same `ts`, 3 → new key and `ts` (logged).
 * Format: `GET {server}?act=a_check&key=..&ts=..&wait=..` → `{ts, updates}` or `{failed, ts?}`.
 */
export class VkLongPoll {
  private readonly abort = new AbortController();
  private loop?: Promise<void>;
  private server?: LongPollServer;
  private ts = "";
  private storedTs?: string;
  /** After `failed: 3`, the next server's ts replaces ours. */
  private takeServerTs = false;

  constructor(private readonly o: VkLongPollOptions) {}

  /**
   * Gets the server, reads the stored `ts` (else the server's) and starts the loop.
   * @throws what getServer or loadTs throw
   */
  async start(): Promise<void> {
    this.server = await this.o.getServer();
    this.storedTs = await this.o.loadTs();
    this.ts = this.storedTs ?? this.server.ts;
    // The first start keeps VK's ts at once: a stop before the first batch, then a restart,
    // continues from here instead of skipping what came meanwhile.
    if (this.storedTs === undefined) {
      await this.o.saveTs(this.ts);
      this.storedTs = this.ts;
    }
    this.o.logger.info({ ts: this.ts, stored: this.storedTs !== undefined }, "vk long poll started");
    this.loop = this.run();
  }

  /** Ends the loop after the event being recorded (if any); fetches in flight are aborted. */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
  }

  private get stopped(): boolean {
    return this.abort.signal.aborted;
  }

  private async run(): Promise<void> {
    const base = this.o.backoffMs ?? 3000;
    let backoff = base;
    let failures = 0;
    const pause = async () => {
      await sleep(backoff, this.abort.signal);
      backoff = Math.min(MAX_BACKOFF_MS, backoff * 2);
    };
    while (!this.stopped) {
      if (!this.server) {
        try {
          this.server = await this.o.getServer();
          if (this.takeServerTs) this.ts = this.server.ts;
          this.takeServerTs = false;
        } catch (error) {
          this.o.logger.error({ err: error }, "groups.getLongPollServer failed; retrying");
          await pause();
          continue;
        }
      }
      let answer: { ts?: unknown; updates?: unknown; failed?: unknown };
      try {
        answer = await this.check(this.server);
        failures = 0;
      } catch (error) {
        if (this.stopped) return;
        failures++;
        this.o.logger.warn({ err: error, failures }, "long poll request failed; retrying");
        if (failures >= REFRESH_AFTER_FAILURES) this.server = undefined;
        await pause();
        continue;
      }
      if (answer.failed !== undefined) {
        this.onFailed(Number(answer.failed), answer.ts);
        continue;
      }
      const updates = Array.isArray(answer.updates) ? (answer.updates as unknown[]) : [];
      const nextTs = answer.ts === undefined ? this.ts : String(answer.ts);
      // Each event is recorded before the next; a failure retries from that event, the ts unmoved.
      let done = 0;
      while (done < updates.length && !this.stopped) {
        const event = updates[done];
        if (!event || typeof event !== "object" || typeof (event as VkEvent).type !== "string") {
          this.o.logger.warn({ ts: this.ts, index: done }, "long poll update is not a VK event; skipped");
          done++;
          continue;
        }
        let recorded = false;
        try {
          recorded = (await this.o.handle(event as VkEvent)) === true;
          if (!recorded)
            this.o.logger.error(
              { event_id: (event as VkEvent).event_id, type: (event as VkEvent).type, ts: this.ts },
              "long poll event not recorded; retrying (ts not advanced)",
            );
        } catch (error) {
          this.o.logger.error(
            { err: error, event_id: (event as VkEvent).event_id, type: (event as VkEvent).type, ts: this.ts },
            "long poll event could not be recorded; retrying (ts not advanced)",
          );
        }
        if (recorded) {
          done++;
          backoff = base;
        } else await pause();
      }
      if (done < updates.length) return; // stopped mid-batch: the stored ts still points before it
      this.ts = nextTs;
      if (this.ts !== this.storedTs) {
        try {
          await this.o.saveTs(this.ts);
          this.storedTs = this.ts;
        } catch (error) {
          // The events are recorded; a restart from the older ts only meets duplicates.
          this.o.logger.warn({ err: error, ts: this.ts }, "long poll ts could not be stored; will try after the next batch");
        }
      }
    }
  }

  /** One a_check request, aborted by stop or after `wait` + 10 s. @throws on network errors, non-2xx, non-JSON */
  private async check(server: LongPollServer): Promise<{ ts?: unknown; updates?: unknown; failed?: unknown }> {
    const waitS = this.o.waitS ?? 25;
    const url = new URL(server.server);
    url.searchParams.set("act", "a_check");
    url.searchParams.set("key", server.key);
    url.searchParams.set("ts", this.ts);
    url.searchParams.set("wait", String(waitS));
    const signal = AbortSignal.any([this.abort.signal, AbortSignal.timeout(waitS * 1000 + 10_000)]);
    const res = await fetch(url, { signal });
    if (!res.ok) throw new Error(`long poll server answered HTTP ${res.status}`);
    const body = (await res.json()) as unknown;
    if (!body || typeof body !== "object") throw new Error("long poll answer is not a JSON object");
    return body as { ts?: unknown; updates?: unknown; failed?: unknown };
  }

  /** VK's `failed` codes (Bots Long Poll API). */
  private onFailed(code: number, ts: unknown): void {
    const log = this.o.logger;
    if (code === 1 && ts !== undefined) {
      log.warn({ ts: this.ts, new_ts: String(ts) }, "VK's long poll history no longer reaches our ts: events in between were lost; continuing from VK's ts");
      this.ts = String(ts);
    } else if (code === 2) {
      log.info({ ts: this.ts }, "long poll key expired; getting a new key (same ts)");
      this.server = undefined;
    } else {
      // 3 (or unknown): VK lost the information; a new key and ts.
      log.warn({ failed: code, ts: this.ts }, "VK long poll lost its information; new key and ts, events in between may be lost");
      this.server = undefined;
      this.takeServerTs = true;
    }
  }
}
