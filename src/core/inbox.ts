import type { Logger } from "pino";
import type { BotConfig } from "../config/schema.js";
import { FencedError } from "../errors.js";
import type { Store } from "../storage/index.js";
import type { MessageRow } from "../storage/messages.js";
import type { OwnerFence } from "../storage/owners.js";
import type { Pipeline } from "./pipeline.js";
import { resumeReceived } from "./recovery.js";

/** A bot this instance owns, as the inbox sweep sees it. */
export interface InboxBot {
  config: BotConfig;
  pipeline: Pipeline;
  fence: OwnerFence;
}

/** Options of {@link InboxSweep}. */
export interface InboxOptions {
  store: Store;
  logger: Logger;
  /** The bots owned now (read at every round). */
  bots: () => InboxBot[];
  /**
   * Pause between rounds, ms, asked before each round: short while other instances may record
   * this instance's bots (webhooks and callbacks reach any instance), long when alone.
   */
  intervalMs: () => number;
  /** Rows read per round at most. @defaultValue 500 */
  batch?: number;
  /** Clock, epoch ms UTC. @defaultValue Date.now */
  now?: () => number;
  /** Called when a write was fenced (this instance lost a bot). */
  onFenced?: (error: FencedError) => void;
}

/**
 * The owner's inbox (scale-out, docs/scaling.md): any instance may record a bot's message (a webhook
 * or callback reaching a non-owner; an instance that woke after losing the bot), but only the
 * owner answers. Every round reads the ids of the `received` rows of the bots owned here (the
 * `(bot, status, id)` index alone), then the rows their pipelines do not hold, and queues them in id
 * order, exactly as recovery resumes them (rows older than `recovery.resume_within` expire).
 */
export class InboxSweep {
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = false;

  constructor(private readonly o: InboxOptions) {}

  /** Starts the rounds. */
  start(): void {
    const loop = () => {
      if (this.stopped) return;
      this.timer = setTimeout(() => void this.tick().finally(loop), this.o.intervalMs());
      this.timer.unref();
    };
    loop();
  }

  /** Runs one round now (serialised with the timer's). */
  tick(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.running ??= this.round()
      .catch((error) => this.o.logger.warn({ err: error }, "inbox sweep failed (database unreachable?); trying again next round"))
      .finally(() => (this.running = undefined));
    return this.running;
  }

  private async round(): Promise<void> {
    const bots = this.o.bots();
    if (!bots.length) return;
    const byName = new Map(bots.map((b) => [b.config.name, b]));
    // Ids first (the index alone): under a backlog the pipelines hold nearly all of them.
    const ids = await this.o.store.messages.receivedIds([...byName.keys()], this.o.batch ?? 500);
    const unheld = ids.filter((r) => !byName.get(r.bot)?.pipeline.holds(r.id)).map((r) => r.id);
    if (!unheld.length) return;
    // Rows not held by their pipeline, by bot, in id order; still `received` when read.
    const rows = await this.o.store.messages.selectIncoming({ ids: unheld, statuses: ["received"] });
    const fresh = new Map<string, MessageRow[]>();
    for (const r of rows) if (!byName.get(r.bot)?.pipeline.holds(r.id)) fresh.set(r.bot, [...(fresh.get(r.bot) ?? []), r]);
    for (const [name, mine] of fresh) {
      const b = byName.get(name)!;
      if (this.stopped) return;
      try {
        const done = await resumeReceived({ bot: b.config, store: this.o.store, pipeline: b.pipeline, now: this.o.now, fence: b.fence }, mine);
        if (done.resumedIds.length || done.expired)
          this.o.logger.info({ bot: name, queued: done.resumedIds.length, expired: done.expired }, "inbox: messages recorded elsewhere queued for an answer");
      } catch (error) {
        if (!(error instanceof FencedError)) throw error;
        this.o.logger.error({ bot: name, epoch: error.epoch }, "inbox: lost ownership of the bot; not answering its messages");
        this.o.onFenced?.(error);
      }
    }
  }

  /** Stops the rounds and waits for one in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }
}
