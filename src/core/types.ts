import type { Logger } from "pino";
import type { BotConfig, ChannelName } from "../config/schema.js";
import type { Completion, ToolDefinition } from "../llm/client.js";
import type { ImageRef } from "./images.js";
import type { VoiceRef } from "./voice.js";
import type { PromptKind } from "../llm/prompt.js";
import type { LedgerRow } from "../storage/balance.js";
import type { MessageRow } from "../storage/messages.js";
import type { OwnerFence } from "../storage/owners.js";

/**
 * One incoming message or comment or review, whatever the channel (docs/architecture.md). Channels build it
 * from their raw updates; nothing channel-specific reaches the core except `target`, which the
 * same channel reads back to deliver the answer.
 */
export interface IncomingMessage {
  bot: string;
  channel: ChannelName;
  /** What kind of text it is; selects the prompt file. */
  kind: PromptKind;
  /** Where the answer goes: Bot API `chat_id`, VK `peer_id`, 2GIS review id. */
  chatId: string;
  userId: string | null;
  userName: string | null;
  text: string;
  /**
   * Pictures sent with the message (Telegram `file_id`s, VK CDN URLs), fetched when the model
   * is asked (`llm.vision`); stored in the meta, so replay and recovery fetch the same ones.
   */
  images?: ImageRef[];
  /**
   * A voice message (Telegram `voice` / `audio` / `video_note`, VK `audio_message`): transcribed
   * before the model is asked (core/stages/transcribe.ts), then `text` holds the transcript;
   * stored in the meta, so replay and recovery use the same audio or the stored transcript.
   */
  voice?: VoiceRef;
  /**
   * Messages that arrive separately but are one message (Telegram `media_group_id` of an
   * album): recorded each, answered once together (core/albums.ts).
   */
  group?: string;
  /** Conversation key (docs/architecture.md): `tg:<chat_id>`, `vk:dm:<peer_id>`, `2gis:review:<id>`. */
  threadKey: string;
  /** Unique per bot; a second message with the same key is a redelivery and is dropped. */
  dedupeKey: string | null;
  /** The channel's id of this message (Bot API `message_id`...). */
  channelMessageId: string | null;
  /** Channel data needed to answer (reply-to ids, post ids); stored as the message's meta. */
  target?: Record<string, unknown>;
  /** Extra prompt variables (`post_text`, `rating`...). */
  vars?: Record<string, string>;
  /** When we received it, epoch ms UTC. */
  receivedMs: number;
  /** A contact the user shared (Bot API `Message.contact`), for features.leads. */
  contact?: SharedContact;
  /**
   * A location the user shared (Telegram `Message.location`), degrees WGS84; `text` holds the
   * same as `📍 <latitude>, <longitude>`, so a stored message keeps it.
   */
  location?: { latitude: number; longitude: number };
  /** Set when this message is a button press: the button's data (`text` holds the same). */
  button?: { data: string };
  /**
   * Set when this is not a message but a change of the bot's membership in a private chat: the
   * user blocked the bot, or unblocked it (Telegram `my_chat_member`: `kicked` / `member`).
   * Only features that keep users (coaching) ask channels for it.
   */
  membership?: "blocked" | "unblocked";
}

/**
 * A button under an outgoing message: the label shown, and the data that comes back as an
 * {@link IncomingMessage} with `button` set when it is pressed (Telegram `inline_keyboard` /
 * `callback_query`). A feature puts rows of them in an {@link OutgoingReply}'s `buttons`.
 */
export interface Button {
  label: string;
  /** At most 64 bytes (Bot API `callback_data`). */
  data: string;
}

/**
 * A file sent with an outgoing message (Telegram `sendDocument`; the text becomes its caption).
 * A feature puts it in an {@link OutgoingReply}'s `document`.
 */
export interface OutgoingDocument {
  /** The file name the user sees, e.g. `coaching-shop-42.json`. */
  filename: string;
  /** The file's content, UTF-8 text (JSON, CSV...). */
  content: string;
}

/**
 * One outgoing answer as the core hands it to a channel ({@link ChannelSender.send}): the text
 * and what goes with it. Channels act on what they can show and leave out the rest (VK and 2GIS
 * send the text alone).
 */
export interface OutgoingReply {
  /** The answer's text; split at the channel's length limit (a document's caption: cut to it). */
  text: string;
  /**
   * How `text` is marked up. Every channel sends it as plain text today; the value says what
   * the producer wrote, for channels that render it. @defaultValue "plain"
   */
  format?: "plain" | "markdown";
  /** Rows of buttons under the last part (Telegram `inline_keyboard`). */
  buttons?: Button[][];
  /** A file sent with the text as its caption (Telegram `sendDocument`), instead of a text message. */
  document?: OutgoingDocument;
  /**
   * The label of a one-time keyboard button that shares the user's phone number, under the last
   * part (Telegram `KeyboardButton.request_contact`).
   */
  requestContact?: string;
}

/**
 * What a feature adds to the answer of the message being handled ({@link PipelineContext.reply}):
 * everything of an {@link OutgoingReply} but the text, which the model or the feature writes.
 */
export type ReplyExtras = Omit<OutgoingReply, "text">;

/**
 * A section of the system prompt a feature computed for one answer
 * ({@link PipelineContext.promptSections}): rendered where the prompt file places `{{name}}`,
 * else appended after the prompt, a blank line before it.
 */
export interface PromptSection {
  /** The placeholder name, e.g. `coaching` for `{{coaching}}`. */
  name: string;
  /** The section's text. */
  text: string;
}

/**
 * Kinds of updates beyond text and pictures that a bot's features take; a channel turns the rest
 * away. The pipeline gathers it from the bot's features (`Feature.accepts` in
 * src/core/pipeline.ts, which src/runner.ts hands over); channels read it from the pipeline they
 * hand messages to (`Pipeline.accepts`), so no channel knows a feature by name.
 */
export interface AcceptedUpdates {
  /** A contact the user shares in a private chat (Telegram `Message.contact`). */
  contacts?: boolean;
  /** A location the user shares in a private chat (Telegram `Message.location`). */
  locations?: boolean;
  /** The bot blocked or unblocked in a private chat (Telegram `my_chat_member`). */
  membership?: boolean;
  /**
   * `/start` and `/help` go to the pipeline as messages instead of the channel answering them
   * from the bot's config (`tg.commands.start`, `tg.commands.help`).
   */
  startHelp?: boolean;
}

/** A phone contact a user shared through the channel (Bot API `Contact`). */
export interface SharedContact {
  /** As the channel gave it (Telegram sends digits, sometimes without `+`). */
  phone: string;
  /** First and last name of the contact. */
  name: string | null;
  /** The contact's user id on the channel, when it is a user of it. */
  userId: string | null;
}

/** Where and how to deliver an answer: rebuilt from a stored message, so replay can use it. */
export interface DeliveryTarget {
  bot: string;
  chatId: string;
  threadKey: string;
  kind: PromptKind;
  /** The incoming message's channel id. */
  channelMessageId: string | null;
  /** The stored `target` of the incoming message. */
  target: Record<string, unknown>;
}

/** Result of a delivery: the channel's id of the (first) sent message. */
export interface Delivery {
  channelMessageId: string | null;
}

/** What a channel offers the core: sending an answer. */
export interface ChannelSender {
  /**
   * Sends `reply` as the answer to a message, its text split at the channel's limit.
   * @throws ChannelError when the channel refuses or cannot be reached (after retries)
   */
  send(to: DeliveryTarget, reply: OutgoingReply, progress?: SendProgress): Promise<Delivery>;
  /**
   * True when the channel calls `progress.beforeWrite` itself, right before each request's bytes
   * are written (Telegram, VK: a gated HTTP agent), and never retries a request that may have
   * arrived. Without it the pipeline marks the answer `delivering` before calling `send` (2GIS,
   * which can be asked afterwards: `checkDelivered`).
   */
  readonly gatesWrites?: boolean;
  /**
   * Starts showing that an answer is being prepared (Telegram sendChatAction `typing`, VK
   * messages.setActivity `typing`), renewed until the returned function is called. Best effort:
   * never throws, never delays anything, never goes through the write gate (it is not an answer).
   * Channels without such a sign (2GIS), or targets without one (VK comments), do nothing.
   * @returns stops it (idempotent)
   */
  typing?(to: DeliveryTarget): () => void;
  /**
   * Asks the channel whether an answer to this message is already there (2GIS: the review
   * carries our official comment). Only channels that can tell implement it; the pipeline asks
   * before answering a stored message again (recovery, replay), so nothing is answered twice.
   * @throws ChannelError when the channel cannot be asked now
   */
  checkDelivered?(to: DeliveryTarget): Promise<DeliveryCheck>;
  /**
   * Opens a preview of the answer to a message while the model writes it, or returns undefined
   * where the channel shows none for that message (Telegram: private chats only, Bot API
   * `sendMessageDraft`). A draft is not the answer: it is never recorded or charged and never
   * waits for the write gate; the answer is still delivered by {@link send}.
   */
  draft?(to: DeliveryTarget): DraftSession | undefined;
}

/**
 * The preview of one answer (see {@link ChannelSender.draft}). Best effort: the channel throttles
 * the updates, and the first failed call (400, 429, a network error) ends the drafts of this
 * answer; neither method throws.
 */
export interface DraftSession {
  /** Shows `text`, the model's text so far, as the draft (the channel sends the latest text at its own pace). */
  update(text: string): void;
  /**
   * No more drafts for this answer. Resolves once the call already in flight, if any, has been
   * answered (at once when none is); never rejects. The answer waits for it (a while), so that a
   * late draft does not reach the chat after the answer.
   */
  stop(): Promise<void>;
}

/**
 * How a send of an answer in parts reports its progress to the pipeline, which keeps it durable
 * (`messages.status`, `parts_sent`): parts are 0-based, `parts` is how many the channel split the
 * text into. Every method may throw (a database error, FencedError): the channel then stops and
 * rethrows it, writing nothing more.
 */
export interface SendProgress {
  /** Parts already delivered by an earlier attempt: the channel starts at this one. */
  fromPart: number;
  /** Awaited right before the bytes of a request for `part` are written; throwing cancels it unsent. */
  beforeWrite(part: number, parts: number): Promise<void>;
  /** The request for `part` (after `beforeWrite`) was not delivered: refused, or never written. */
  notWritten(part: number): Promise<void>;
  /** `part` was delivered; `channelMessageId` is the channel's id of it (Bot API `message_id`...). */
  delivered(part: number, parts: number, channelMessageId: string | null): Promise<void>;
}

/**
 * What a channel can tell about an earlier answer to a message: there (with the text found and
 * the channel's id of it), or not.
 */
export type DeliveryCheck = { delivered: true; text: string; channelMessageId: string | null } | { delivered: false };

/** An event for the websocket (docs/architecture.md, "One message's path"). */
export interface ReplyEvent {
  type: "reply";
  bot: string;
  /** Id of the stored answer. */
  message_id: number;
  /** Id of the stored incoming message. */
  in_reply_to: number;
  thread_key: string;
  /** ISO 8601 UTC. */
  at: string;
}

/** Sends events somewhere; must never throw or block. */
export interface Notifier {
  notify(event: ReplyEvent): void;
  close(): Promise<void>;
}

/** State of one message while it moves through the pipeline. */
export interface PipelineContext {
  readonly msg: IncomingMessage;
  readonly bot: BotConfig;
  log: Logger;
  /**
   * The bot's logger, which `log` is a child of (with `thread_key`): `record` makes the
   * message's logger from it once the id is known, a child with both bindings (pino makes a
   * child of a child as an object whose prototype is another per-message object, about 10 µs
   * against 2). Without it, `record` takes a child of `log`.
   */
  readonly botLog?: Logger;
  /** Stored incoming row id, set by `record`. */
  id?: number;
  /** Why the message is filtered (spam stage), if it is. */
  filtered?: string;
  /** The balance reservation, set by the balance gate. */
  reservation?: LedgerRow | null;
  /** Chat messages sent to the model, set by `context`. */
  prompt?: import("../llm/client.js").ChatMessage[];
  /** Tools offered to the model for this message (features add theirs). */
  tools: ToolDefinition<PipelineContext>[];
  completion?: Completion;
  delivery?: Delivery;
  /** Stored answer id, set by `settle`. */
  answerId?: number;
  /**
   * Final outcome, for logs and callers. `interrupted`: a stop came first (the drain deadline
   * aborted the model call, or the answer had not started); the message stays `received` with
   * nothing reserved, and the next start answers it. `fenced`: another instance took the bot over
   * meanwhile; nothing more was written and the new owner answers it. `unconfirmed`: a request of
   * the answer was written and its connection failed (it may have arrived; the charge stands).
   * `partial`: some parts were delivered, a later one was refused (the charge stands; a replay
   * sends the rest).
   */
  outcome?: "duplicate" | "filtered" | "no_balance" | "skipped" | "answered" | "failed" | "interrupted" | "fenced" | "unconfirmed" | "partial";
  /**
   * Scale-out: this instance's ownership of the bot; features pass it to the status changes they
   * make (`messages.setStatus(..., { fence })`), so an instance that lost the bot writes nothing.
   */
  fence?: OwnerFence;
  /** What made the answer fail (`outcome` "failed"), as thrown by the model, channel or database. */
  error?: unknown;
  /** Scratch space for features. */
  state: Record<string, unknown>;
  /**
   * What features add to this answer (buttons, a document, a contact request); the deliver
   * stage sends it with the model's text. Per answer: not stored, so a resumed or replayed
   * answer carries what its own run adds.
   */
  reply: ReplyExtras;
  /** Sections of the system prompt that features computed for this answer, in order. */
  promptSections: PromptSection[];
  /**
   * Time spent by the pipeline itself, ms (performance.now based): `intake` (dedupe, spam,
   * record), `answer` (from leaving the queue to notify, model call included), `deliver` (the
   * channel call alone), `mark` (of `deliver`, the durable marks written right before a gated
   * send's requests, summed over its parts), `modelWait` (waiting for a free model slot,
   * `llm.concurrency`).
   */
  timings: { intake?: number; answer?: number; deliver?: number; mark?: number; modelWait?: number };
  /** The stored row when the message is re-run by replay. */
  stored?: MessageRow;
  /**
   * Sends a fixed text (not from the model) as the answer, free of charge, and stores it as an
   * outgoing message; the incoming message's status is left to the caller. Never throws: a
   * failed send is logged. Used by gates (e.g. the deadline's `expired_reply`).
   */
  sendFreeReply?: (reply: string | OutgoingReply) => Promise<void>;
}
