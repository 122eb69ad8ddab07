import { randomInt } from "node:crypto";
import type { DraftSession } from "../../core/types.js";
import { splitText } from "../../lib/text.js";
import { TG_MAX_TEXT } from "./translate.js";

/** Least time between the starts of two draft calls of one answer, ms. */
export const DRAFT_INTERVAL_MS = 300;

/** Options of {@link TelegramDraft}. */
export interface TelegramDraftOptions {
  /**
   * One Bot API `sendMessageDraft` call with `draft_id` and `text` (the caller adds `chat_id`);
   * rejects when the Bot API refuses it or cannot be reached.
   */
  call(draftId: number, text: string): Promise<unknown>;
  /** Told once, when a call failed and the drafts of this answer stop. */
  onFailure(error: unknown): void;
  /** Least time between the starts of two calls, ms. @defaultValue {@link DRAFT_INTERVAL_MS} */
  intervalMs?: number;
  /** Clock, ms (monotonic is enough). @defaultValue performance.now */
  now?: () => number;
}

/**
 * The draft of one answer in a Telegram private chat (Bot API `sendMessageDraft`: `chat_id`,
 * a non-zero `draft_id` shared by every update of the answer so that Telegram animates the
 * changes, `text` of 1–4096 characters; an ephemeral preview that lasts 30 s unless renewed).
 *
 * At most one call is in flight and calls start at least `intervalMs` apart; only the latest text
 * is sent (updates in between are merged). Text longer than one message shows its first part
 * (cut as the answer will be, src/lib/text.ts), after which nothing more is sent. The first failed
 * call (400, 429, a network error) ends the drafts; nothing is retried.
 */
export class TelegramDraft implements DraftSession {
  /** Random in 1..2^31-1: never 0, and distinct between the answers of a chat. */
  readonly draftId = randomInt(1, 2 ** 31);
  private stopped = false;
  private inFlight = false;
  /** The first part is complete: it was sent, nothing changes it any more. */
  private full = false;
  private pending?: string;
  private lastStart = Number.NEGATIVE_INFINITY;
  private timer?: NodeJS.Timeout;
  /** The call in flight, settled (never rejects) once it is answered or failed. */
  private flight?: Promise<void>;
  private readonly intervalMs: number;
  private readonly now: () => number;

  constructor(private readonly options: TelegramDraftOptions) {
    this.intervalMs = options.intervalMs ?? DRAFT_INTERVAL_MS;
    this.now = options.now ?? (() => performance.now());
  }

  update(text: string): void {
    if (this.stopped || this.full) return;
    this.pending = text;
    this.schedule();
  }

  stop(): Promise<void> {
    this.stopped = true;
    this.pending = undefined;
    clearTimeout(this.timer);
    this.timer = undefined;
    return this.flight ?? Promise.resolve();
  }

  private schedule(): void {
    if (this.timer || this.inFlight || this.stopped) return;
    const wait = this.lastStart + this.intervalMs - this.now();
    if (wait <= 0) this.flush();
    else this.timer = setTimeout(() => this.flush(), wait).unref();
  }

  private flush(): void {
    this.timer = undefined;
    const latest = this.pending;
    this.pending = undefined;
    if (this.stopped || latest === undefined) return;
    let text = latest.trim();
    if (text.length > TG_MAX_TEXT) {
      text = splitText(text, TG_MAX_TEXT)[0]!;
      this.full = true;
    }
    if (!text) return;
    this.inFlight = true;
    this.lastStart = this.now();
    let call: Promise<unknown>;
    try {
      call = this.options.call(this.draftId, text);
    } catch (error) {
      call = Promise.reject(error);
    }
    this.flight = call.then(
      () => {
        this.inFlight = false;
        this.flight = undefined;
        if (this.pending !== undefined) this.schedule();
      },
      (error: unknown) => {
        this.inFlight = false;
        this.flight = undefined;
        void this.stop();
        this.options.onFailure(error);
      },
    );
  }
}
