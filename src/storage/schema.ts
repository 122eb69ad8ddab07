import type { ColumnType, Generated } from "kysely";
import type { PostsTable } from "./posts.js";

/**
 * Table shapes shared by SQLite and MySQL. Times are epoch milliseconds UTC (`*_ms`), money is
 * integer hundredths of a credit (500 = 5.00 credits).
 */
export interface Schema {
  messages: MessagesTable;
  balance_accounts: BalanceAccountsTable;
  balance_ledger: BalanceLedgerTable;
  cursors: CursorsTable;
  leases: LeasesTable;
  leads: LeadsTable;
  tool_effects: ToolEffectsTable;
  posts: PostsTable;
  recoveries: RecoveriesTable;
  instances: InstancesTable;
  bot_owners: BotOwnersTable;
}

/**
 * Incoming statuses (docs/durability.md). `sending`: an attempt claimed the answer (its first
 * `delivering` mark) and none of its requests is being written now (a part was delivered, or a
 * request is known not delivered; parts before `parts_sent` were delivered); a process
 * that dies here leaves it resumable. `delivering`: a request of the answer is being written or
 * was written and its outcome is not recorded yet; never sent again without --force (recovery
 * makes it `unconfirmed`, or asks 2GIS). `partial`: parts before `parts_sent` were delivered, a
 * later one was refused; the charge stands and `bots replay --send` sends the missing parts.
 * `expired`: stranded by a crash or restart and older than `recovery.resume_within` when the bot
 * started again; refunded, answerable by `bots replay --send`. `unconfirmed`: a request was
 * written and its connection failed, or the process died while one was in flight; the charge
 * stands and it is never sent again by itself.
 */
export type IncomingStatus =
  | "received"
  | "filtered"
  | "no_balance"
  | "sending"
  | "delivering"
  | "answered"
  | "failed"
  | "partial"
  | "skipped"
  | "expired"
  | "unconfirmed";

/** Every incoming status, in the order they are usually shown. */
export const INCOMING_STATUSES: readonly IncomingStatus[] = [
  "received",
  "filtered",
  "no_balance",
  "sending",
  "delivering",
  "answered",
  "failed",
  "partial",
  "skipped",
  "expired",
  "unconfirmed",
];
/**
 * Outgoing statuses. Answers are stored `sent`. A proactive message (src/core/proactive.ts) is
 * stored `pending` before it is sent, then `delivering`, then `sent`; or `failed` (not sent,
 * refunded), or `unconfirmed` (cut off between sending and recording; the charge stands).
 */
export type OutgoingStatus = "sent" | "pending";
export type MessageStatus = IncomingStatus | OutgoingStatus;

/**
 * An answer in parts while it is delivered (`messages.delivery`): what a retry, recovery or
 * `bots replay --send` needs to send the missing parts of the same text without asking the model
 * again, and to settle it.
 */
export interface PartialAnswer {
  text: string;
  /** How many parts the channel split it into. */
  parts: number;
  model: string;
  prompt_tokens: number;
  completion_tokens: number;
  latency_ms: number;
}

export interface MessagesTable {
  id: Generated<number>;
  bot: string;
  channel: string;
  /** 'in' from a user, 'out' our answer. */
  direction: "in" | "out";
  status: MessageStatus;
  /** Conversation key, e.g. `tg:<chat_id>` (docs/architecture.md). */
  thread_key: string;
  chat_id: string;
  user_id: string | null;
  user_name: string | null;
  text: string;
  /** sha1 of the normalised text (incoming only), for the duplicate filter. */
  text_hash: string | null;
  /** Unique per bot for incoming messages (`<chat_id>:<message_id>` on Telegram). */
  dedupe_key: string | null;
  /** The channel's own id of this message (Bot API `message_id`, VK `conversation_message_id`...). */
  channel_message_id: string | null;
  /** For 'out': the incoming message answered. */
  reply_to_id: number | null;
  model: string | null;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  /** Hundredths of a credit charged for this answer. */
  cost: number | null;
  latency_ms: number | null;
  /** Why a message was filtered, skipped or failed. */
  error: string | null;
  /** JSON with channel details needed to answer later (reply target, images, post...). */
  meta: string | null;
  /**
   * Incoming: how many parts of its answer were delivered (0-based index of the next part to
   * send); null before the first (migration 0012).
   */
  parts_sent: number | null;
  /**
   * Incoming: the answer being delivered in parts, JSON {@link PartialAnswer}; written when the
   * first part of a multi-part answer is sent, cleared when it is settled (migration 0012).
   */
  delivery: string | null;
  created_ms: number;
  updated_ms: number;
}

export interface BalanceAccountsTable {
  account: string;
  /** Hundredths of a credit. */
  balance: number;
  created_ms: number;
  updated_ms: number;
}

/** Ledger reasons: a top-up, a reservation for a reply, its refund, a manual adjustment. */
export type LedgerReason = "topup" | "reserve" | "refund" | "adjust";

export interface BalanceLedgerTable {
  id: Generated<number>;
  account: string;
  /** Signed hundredths of a credit. */
  delta: number;
  /** Balance right after this movement, hundredths. */
  balance_after: number;
  reason: LedgerReason;
  message_id: number | null;
  /** For a refund: the id of the reservation it undoes (unique, so a refund happens once). */
  ref_id: number | null;
  note: string | null;
  created_ms: number;
}

export interface CursorsTable {
  bot: string;
  name: string;
  value: string;
  updated_ms: number;
}

export interface LeasesTable {
  name: string;
  holder: string;
  expires_ms: number;
}

export interface LeadsTable {
  id: Generated<number>;
  bot: string;
  thread_key: string;
  chat_id: string;
  user_id: string | null;
  name: string | null;
  phone: string | null;
  email: string | null;
  note: string | null;
  /** The dialog at capture time, as JSON `[{role, text, at_ms}]`. */
  dialog: string | null;
  /** The incoming message during which the lead was saved last. */
  message_id: number | null;
  /** The customer's display name from the channel (Telegram first/last name). */
  user_name: string | null;
  /** When the operator e-mail went out, epoch ms UTC; null until it did. */
  notified_ms: number | null;
  /** Operator e-mail attempts since the lead last changed. */
  notify_attempts: Generated<number>;
  /** Why the last e-mail attempt failed. */
  notify_error: string | null;
  created_ms: number;
  updated_ms: number;
}

/**
 * One tool call's effect (migration 0012), keyed by (bot, message_id, tool, args_hash): a repeat
 * of the call for the same incoming message finds it and changes nothing.
 */
export interface ToolEffectsTable {
  id: Generated<number>;
  bot: string;
  /** The incoming message (`messages.id`) being answered. */
  message_id: number;
  tool: string;
  /** SHA-256 (hex) of the normalised arguments as canonical JSON (keys sorted). */
  args_hash: string;
  /** The row the effect wrote (`leads.id`, `coaching_checkins.id`), when there is one. */
  ref: number | null;
  created_ms: number;
}

/** One recovery run of a bot (migration 0005): what it found and did. Times epoch ms UTC. */
export interface RecoveriesTable {
  id: Generated<number>;
  bot: string;
  /** The process that ran it (`host:pid:random`). */
  holder: string;
  /** Messages answered again through the queue. */
  resumed: number;
  /** Reservations without an answer given back. */
  refunded: number;
  /** Messages too old to resume, now `expired`. */
  expired: number;
  /** `delivering` rows the channel cannot confirm, now `unconfirmed`. */
  unconfirmed: number;
  /** `delivering` rows the channel confirmed as delivered (2GIS), now `answered`. */
  confirmed: number;
  started_ms: number;
  finished_ms: number;
}

/**
 * One running `bots start` (migration 0009). `heartbeat_ms` is the database's clock (MySQL
 * `NOW(6)`, SQLite `julianday('now')`) in epoch ms, never a local clock.
 */
export interface InstancesTable {
  id: string;
  host: string;
  pid: number;
  /** JSON array of the bot names this instance may own (its selection, after pins). */
  bots: string;
  started_ms: number;
  heartbeat_ms: number;
  /** The instance's `--lease-ttl`, ms (migration 0011). */
  ttl_ms: ColumnType<number, number | undefined, number>;
}

/** Who owns a bot (migration 0009); `epoch` grows at every change of owner (fencing token). */
export interface BotOwnersTable {
  bot: string;
  /** Instance id; null when handed over and not yet taken. */
  owner: string | null;
  epoch: number;
  /** Database clock, epoch ms. */
  changed_ms: number;
}

/**
 * features.coaching (migration 0008, docs/coaching.md). Days are local `YYYY-MM-DD` strings in
 * the user's zone; zones are IANA names. Declared as its own block and merged into
 * {@link Schema}.
 */
export interface CoachingTables {
  coaching_users: CoachingUsersTable;
  coaching_goals: CoachingGoalsTable;
  coaching_checkins: CoachingCheckinsTable;
  coaching_pauses: CoachingPausesTable;
  coaching_deliveries: CoachingDeliveriesTable;
}

// Declaration merging keeps the coaching tables out of the shared block above.
export interface Schema extends CoachingTables {}

/** `onboarding` until the profile is confirmed; `stopped` after /stop; `blocked` when the user blocked the bot. */
export type CoachingUserStatus = "onboarding" | "active" | "stopped" | "blocked";

/** One user of a coaching bot (key: bot, user_id). */
export interface CoachingUsersTable {
  bot: string;
  user_id: string;
  /** Where proactive messages go: Bot API `chat_id`. */
  chat_id: string;
  thread_key: string;
  /** How to address them. */
  name: string | null;
  /** IANA zone, e.g. `Europe/Berlin`; never an offset. */
  timezone: string;
  /** Minutes after local midnight at which a new day starts (240 = 04:00). */
  day_starts_at: number;
  /** Daily reminder, minutes after local midnight; null = off. */
  remind_at: number | null;
  status: CoachingUserStatus;
  /** Current onboarding step; null when done. */
  step: string | null;
  /** Onboarding answers so far (JSON), so a restart resumes at the same step. */
  draft: string | null;
  /** The profile the model wrote, once confirmed. */
  profile: string | null;
  created_ms: number;
  updated_ms: number;
}

/** A goal: daily, or `target` days a week. */
export interface CoachingGoalsTable {
  id: Generated<number>;
  bot: string;
  user_id: string;
  title: string;
  kind: "daily" | "weekly";
  /** Check-in days per week (7 for daily goals). */
  target: number;
  status: "active" | "paused" | "archived";
  created_ms: number;
  updated_ms: number;
}

/** One check-in; the log from which streaks and points are computed. */
export interface CoachingCheckinsTable {
  id: Generated<number>;
  bot: string;
  user_id: string;
  goal_id: number;
  /** The local day it counts for (see rules.checkinDay). */
  day: string;
  /** Points awarded (rules.checkinPoints); /undo removes the row and so returns them exactly. */
  points: number;
  /** `command`, `button`, `text` (log_progress), `backfill`. */
  source: string;
  note: string | null;
  created_ms: number;
}

/** A paused stretch (`/pause 7d`): days in it neither count nor break streaks. */
export interface CoachingPausesTable {
  id: Generated<number>;
  bot: string;
  user_id: string;
  from_day: string;
  /** Inclusive; null = until /resume. */
  until_day: string | null;
  created_ms: number;
}

/**
 * A proactive message claimed before it is sent, unique on (bot, user_id, kind, day): the
 * guarantee against duplicates across restarts and processes.
 */
export interface CoachingDeliveriesTable {
  id: Generated<number>;
  bot: string;
  user_id: string;
  /** `reminder` or `weekly`. */
  kind: string;
  /** Local day (reminder) or the week's Monday (weekly summary). */
  day: string;
  /** `claimed` (sending, or the process died while sending: never sent again), `sent`, `failed`. */
  status: "claimed" | "sent" | "failed";
  /** Stored outgoing message. */
  message_id: number | null;
  error: string | null;
  created_ms: number;
  updated_ms: number;
}
