import type { Logger } from "pino";
import { withRetries } from "../../lib/retry.js";
import { isRetryableStorageError } from "../../storage/faults.js";
import type { NewOutgoing } from "../../storage/messages.js";
import type { IncomingStatus } from "../../storage/schema.js";
import type { LoadedImages } from "../images.js";
import type { DeliveryTarget, PipelineContext } from "../types.js";

/**
 * What one attempt at answering a recorded message carries from stage to stage (never stored):
 * how it came to be answered, how far it got, what the stages computed for the next ones.
 */
export interface AnswerState {
  /**
   * Resumed from storage by recovery, the inbox sweep or a catch-up (not replay): a free reply
   * (`empty_reply`, `no_vision_reply`) may still go out, and a reservation an earlier attempt
   * left open is given back first.
   */
  resumed?: boolean;
  /** `bots replay --send --force`: claimed from answered statuses too, no delivery check first. */
  force?: boolean;
  /** Answered by the queue, which repeats an attempt the database cut short (not replay). */
  throughOutages?: boolean;
  /** The attempt ended with the database away before its failure was recorded: answered again once it is back. */
  unrecorded?: boolean;
  /** The attempt ended unsettled for another reason (its failure could not be recorded): parked, then resumed. */
  stranded?: boolean;
  /** What the attempt before this one did (a database outage cut it short): what is given back. */
  earlier?: Pick<AnswerState, "claimTried" | "sendStarted" | "charged">;
  /** The claim to send (`sending` / `delivering`) was tried; it may have committed. */
  claimTried?: boolean;
  /** Something may have reached the channel: never answered again from the start. */
  sendStarted?: boolean;
  /** The rest of an answer in parts: the charge was made with the first parts and stands. */
  charged?: boolean;
  /** Parts an earlier attempt delivered: sending starts at this one (0-based). */
  fromPart?: number;
  /** Parts delivered, stored by settle (`parts_sent`); set by gated channels only. */
  parts?: number;
  /** The pictures fetched for the model by the context stage. */
  images?: LoadedImages;
  /** Stops the "typing…" sign the context stage started (idempotent); deliver calls it right before the send. */
  stopTyping?: () => void;
}

/** A recorded message being answered: its stored row id is known. */
export interface AnswerContext extends PipelineContext {
  /** Stored incoming row id. */
  id: number;
  /** This attempt's state. */
  answer: AnswerState;
}

/** Statuses an answer is claimed from: never answered, or partly delivered (the missing parts). */
export const CLAIMABLE: IncomingStatus[] = ["received", "failed", "no_balance", "expired", "partial"];
/** Statuses a forced answer (`bots replay --send --force`) is claimed from as well. */
export const RESENDABLE: IncomingStatus[] = ["answered", "delivering", "unconfirmed", "skipped"];

/** Thrown into an answer that a stop (the drain deadline) interrupts. */
export class StopError extends Error {
  constructor() {
    super("stopped by the drain deadline");
    this.name = "StopError";
  }
}

/** Where the answer to the context's message goes. */
export function targetOf(ctx: PipelineContext): DeliveryTarget {
  const m = ctx.msg;
  return { bot: m.bot, chatId: m.chatId, threadKey: m.threadKey, kind: m.kind, channelMessageId: m.channelMessageId, target: m.target ?? {} };
}

/** The stored incoming row an outgoing answer refers to. */
export function incomingRef(ctx: AnswerContext): NewOutgoing["incoming"] {
  const m = ctx.msg;
  return { id: ctx.id, bot: m.bot, channel: m.channel, thread_key: m.threadKey, chat_id: m.chatId };
}

/**
 * Retries a storage operation through short outages (connection refused, lock waits): back-off
 * doubling from `baseMs` up to 5 s, `retries` times, while {@link isRetryableStorageError}.
 * @throws the last error, or at once one that is not a database blip
 */
export function storageRetry<T>(fn: () => Promise<T>, log: Logger, baseMs: number, retries = 6): Promise<T> {
  return withRetries(fn, {
    retries,
    baseMs,
    maxMs: 5000,
    classify: (e) => ({ retry: isRetryableStorageError(e) }),
    onRetry: (e, attempt, waitMs) => log.warn({ err: e, attempt, wait_ms: Math.round(waitMs) }, "database unavailable, retrying"),
  });
}
