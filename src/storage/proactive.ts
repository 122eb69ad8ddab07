import type { Kysely } from "kysely";
import { FencedError } from "../errors.js";
import { fenceHolds, type OwnerFence, type OwnersRepo } from "./owners.js";
import type { Schema } from "./schema.js";

/** A proactive message to store before it is sent (src/core/proactive.ts, step 1). */
export interface NewProactive {
  bot: string;
  channel: string;
  thread_key: string;
  /** Bot API `chat_id`, VK `peer_id`. */
  chat_id: string;
  /** The template text (replaced by the model's when the claim is made). */
  text: string;
  /** The incoming message it answers, when a command asked for it (`/week`). */
  reply_to_id: number | null;
  /** What it is (`reminder`, `weekly`), stored in the meta beside `proactive: true`. */
  kind?: string;
  /** epoch ms UTC */
  created_ms: number;
}

/** What a proactive message that was sent is recorded with. */
export interface SentProactive {
  channel_message_id: string | null;
  /** Hundredths of a credit: the reservation that stands, 0 for the template. */
  cost: number;
  model: string | null;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  /** ms */
  latency_ms: number | null;
}

/**
 * The outgoing rows of proactive messages (`messages`, `direction` out, `reply_to_id` of the
 * command or null) through their statuses: `pending` → `delivering` (a request being written)
 * → `sent`, or `failed` / `unconfirmed` (docs/durability.md). Every change is conditional on
 * the status it leaves; `at` is the caller's clock (epoch ms UTC), stored as `updated_ms`.
 */
export class ProactiveRepo {
  constructor(
    private readonly db: Kysely<Schema>,
    private readonly owners: Pick<OwnersRepo, "holds">,
  ) {}

  /**
   * Stores a proactive message `pending`, its meta `{ proactive: true, kind }`.
   * @returns the row's id
   */
  async insertPending(m: NewProactive): Promise<number> {
    const row = await this.db
      .insertInto("messages")
      .values({
        bot: m.bot,
        channel: m.channel,
        direction: "out",
        status: "pending",
        thread_key: m.thread_key,
        chat_id: m.chat_id,
        user_id: null,
        user_name: null,
        text: m.text,
        text_hash: null,
        dedupe_key: null,
        channel_message_id: null,
        reply_to_id: m.reply_to_id,
        model: null,
        prompt_tokens: null,
        completion_tokens: null,
        cost: 0,
        latency_ms: null,
        error: null,
        meta: JSON.stringify({ proactive: true, ...(m.kind ? { kind: m.kind } : {}) }),
        created_ms: m.created_ms,
        updated_ms: m.created_ms,
      })
      .executeTakeFirstOrThrow();
    return Number(row.insertId);
  }

  /**
   * Claims a `pending` row for sending with its final `text`: it stays `pending` for a channel
   * that marks each request itself (`gated`), else becomes `delivering` at once.
   * @returns false when the row is no longer `pending` or `fence` no longer holds
   */
  async claim(id: number, text: string, gated: boolean, at: number, fence?: OwnerFence): Promise<boolean> {
    let q = this.db
      .updateTable("messages")
      .set({ status: gated ? "pending" : "delivering", text, updated_ms: at })
      .where("id", "=", id)
      .where("status", "=", "pending");
    if (fence) q = q.where(fenceHolds(fence));
    return Number((await q.executeTakeFirst()).numUpdatedRows) === 1;
  }

  /**
   * Marks a request for `part` (0-based) as being written: `pending` → `delivering`, with
   * `parts_sent` = `part`.
   * @throws FencedError when `fence` no longer holds; Error when the row is no longer `pending`
   * (recovery gave it up)
   */
  async markWriting(id: number, part: number, at: number, fence?: OwnerFence): Promise<void> {
    let q = this.db
      .updateTable("messages")
      .set({ status: "delivering", parts_sent: part, updated_ms: at })
      .where("id", "=", id)
      .where("status", "=", "pending");
    if (fence) q = q.where(fenceHolds(fence));
    if (Number((await q.executeTakeFirst()).numUpdatedRows) !== 1) {
      if (fence && !(await this.owners.holds(fence.bot, fence.owner, fence.epoch))) throw new FencedError(fence.bot, fence.epoch);
      throw new Error("proactive message was given up by recovery before it was sent");
    }
  }

  /** Back to `pending` from `delivering` with `partsSent` parts delivered (the next request is not written yet). */
  async unmarkWriting(id: number, partsSent: number, at: number): Promise<void> {
    await this.db
      .updateTable("messages")
      .set({ status: "pending", parts_sent: partsSent, updated_ms: at })
      .where("id", "=", id)
      .where("status", "=", "delivering")
      .execute();
  }

  /** Records a sent message: `delivering` → `sent` (a recovery's `unconfirmed` that came first stays). Not fenced: it was sent. */
  async recordSent(id: number, sent: SentProactive, at: number): Promise<void> {
    await this.db
      .updateTable("messages")
      .set({ status: "sent", ...sent, updated_ms: at })
      .where("id", "=", id)
      .where("status", "=", "delivering")
      .execute();
  }

  /**
   * Records a send that may have arrived (`unconfirmed`) or arrived in part (`sent` with the
   * failure in `error`), charged `cost`: from `pending` or `delivering`.
   */
  async recordCutOff(id: number, status: "unconfirmed" | "sent", error: string, cost: number, at: number): Promise<void> {
    await this.db
      .updateTable("messages")
      .set({ status, error: error.slice(0, 2000), cost, updated_ms: at })
      .where("id", "=", id)
      .where("status", "in", ["pending", "delivering"])
      .execute();
  }

  /** Not sent: `pending` or `delivering` → `failed` with the reason (the caller scrubs secrets from it), cost 0. */
  async fail(id: number, reason: string, at: number): Promise<void> {
    await this.db
      .updateTable("messages")
      .set({ status: "failed", error: reason.slice(0, 2000), cost: 0, updated_ms: at })
      .where("id", "=", id)
      .where("status", "in", ["pending", "delivering"])
      .execute();
  }

  /**
   * Recovery of a row a crash left `from` (`pending` or `delivering`): `unconfirmed` when it may
   * have been sent (the charge stands), else `failed` with cost 0; `note` says why.
   * @returns false when the row left `from` meanwhile
   * @throws FencedError when `fence` no longer holds
   */
  async recover(id: number, from: "pending" | "delivering", sent: boolean, note: string, at: number, fence?: OwnerFence): Promise<boolean> {
    let q = this.db
      .updateTable("messages")
      .set({ status: sent ? "unconfirmed" : "failed", error: note, ...(sent ? {} : { cost: 0 }), updated_ms: at })
      .where("id", "=", id)
      .where("status", "=", from);
    if (fence) q = q.where(fenceHolds(fence));
    if (Number((await q.executeTakeFirst()).numUpdatedRows) === 1) return true;
    if (fence && !(await this.owners.holds(fence.bot, fence.owner, fence.epoch))) throw new FencedError(fence.bot, fence.epoch);
    return false;
  }
}
