import type { CallbackQuery, Contact, Message, Update, UserFromGetMe } from "telegraf/types";
import type { BotConfig } from "../../config/schema.js";
import { IMAGE_MIMES, type ImageRef } from "../../core/images.js";
import type { AcceptedUpdates, IncomingMessage } from "../../core/types.js";
import type { VoiceRef } from "../../core/voice.js";

/** Bot API limit of one text message, characters. */
export const TG_MAX_TEXT = 4096;

/** What to do with one Bot API update. */
export type TelegramAction =
  | { kind: "ignore"; reason: string }
  | { kind: "command"; command: "start" | "help"; chatId: number; replyTo?: number }
  /** `callbackQueryId`: a button press, to be answered with answerCallbackQuery. */
  | { kind: "message"; message: IncomingMessage; callbackQueryId?: string };

/**
 * Translates a Bot API `Update` (getUpdates / webhook) into what the bot does with it.
 * Text, photos and image documents (with or without a caption; albums carry their
 * `media_group_id` as `group`) and voice messages (`voice`, `audio`, `video_note`: `voice`,
 * transcribed by the pipeline) become pipeline messages, and so does a shared contact in a private
 * chat when `accepts.contacts`, and a shared location in a private chat when `accepts.locations`;
 * `/start` and `/help` answer from config unless `accepts.startHelp`;
 * stickers, joins, edits and other updates are ignored. In groups (`tg.groups`) the bot answers
 * when mentioned or replied to (`mention`), always (`all`) or never (`off`). A comment under a
 * channel post (in the linked discussion group: a reply to the post's automatic forward,
 * `is_automatic_forward: true`) is answered in `mention` and `all` modes as kind `comments`,
 * with the post's text and date in `vars.post_text`/`vars.post_date` (prompt and deadline), and
 * thread key `tg:<chat_id>:post:<message_thread_id>:<user_id>` (other group messages:
 * `tg:<chat_id>:<user_id>`; private chats: `tg:<chat_id>`).
 * @param nowMs receive time, epoch ms UTC
 * @param accepts what the bot's features take beyond text and pictures (`Pipeline.accepts`)
 */
export function translateUpdate(update: Update, bot: BotConfig, me: UserFromGetMe, nowMs: number, accepts: AcceptedUpdates = {}): TelegramAction {
  if ("callback_query" in update && update.callback_query) return buttonPress(update.callback_query, bot, nowMs);
  if ("my_chat_member" in update && update.my_chat_member) return membership(update.my_chat_member, bot, nowMs, accepts);
  if (!("message" in update) || !update.message)
    return { kind: "ignore", reason: `update type ${Object.keys(update).filter((k) => k !== "update_id")[0] ?? "unknown"}` };
  const m = update.message as Message & Partial<Message.TextMessage & Message.PhotoMessage>;
  const chat = m.chat;
  if (!chat || !m.from) return { kind: "ignore", reason: "message without chat or sender" };
  if (m.from.is_bot) return { kind: "ignore", reason: "message from a bot" };
  const isGroup = chat.type === "group" || chat.type === "supergroup";
  if (chat.type === "channel") return { kind: "ignore", reason: "channel post" };
  if ((m as { is_automatic_forward?: boolean }).is_automatic_forward) return { kind: "ignore", reason: "channel post forwarded to its discussion group" };
  // A comment under a channel post: in the linked discussion group it replies to the automatic forward of the post.
  const post = isGroup ? (m.reply_to_message as (Message & { is_automatic_forward?: boolean; text?: string; caption?: string }) | undefined) : undefined;
  const onPost = post?.is_automatic_forward === true;
  const contact = (m as Partial<Message.ContactMessage>).contact;
  if (contact && accepts.contacts && !isGroup) return contactMessage(m, contact, bot, nowMs);
  const location = (m as Partial<Message.LocationMessage>).location;
  // E.g. a coaching bot takes a shared location as the user's time zone at onboarding.
  if (location && accepts.locations && !isGroup) {
    const text = locationText(location.latitude, location.longitude);
    return {
      kind: "message",
      message: privateMessage(bot, m.chat.id, m.from, text, `${m.chat.id}:${m.message_id}`, nowMs, {
        channelMessageId: String(m.message_id),
        location: { latitude: location.latitude, longitude: location.longitude },
      }),
    };
  }
  const images = "photo" in m || "document" in m ? pictures(m, bot.llm.vision.max_bytes) : undefined;
  const voice = voiceOf(m);
  const raw = typeof m.text === "string" ? m.text : typeof m.caption === "string" ? m.caption : images || voice ? "" : undefined;
  if (raw === undefined) return { kind: "ignore", reason: "no text, picture or voice (sticker, join, other media...)" };

  const entities = (m.text !== undefined ? m.entities : m.caption_entities) ?? [];
  const commandEntity = entities.find((e) => e.type === "bot_command" && e.offset === 0);
  if (commandEntity) {
    const [cmd, at] = raw.slice(1, commandEntity.length).split("@");
    if (at && at.toLowerCase() !== (me.username ?? "").toLowerCase()) return { kind: "ignore", reason: "command for another bot" };
    // A feature may answer /start and /help itself (coaching: onboarding, its command list).
    if ((cmd === "start" || cmd === "help") && !accepts.startHelp)
      return { kind: "command", command: cmd, chatId: chat.id, replyTo: isGroup ? m.message_id : undefined };
  }

  let text = raw;
  if (isGroup) {
    const mode = bot.tg?.groups ?? "mention";
    if (mode === "off") return { kind: "ignore", reason: "groups are off" };
    const handle = me.username ? `@${me.username}` : undefined;
    const mentioned = handle !== undefined && raw.toLowerCase().includes(handle.toLowerCase());
    const repliedToMe = m.reply_to_message?.from?.id === me.id;
    if (mode === "mention" && !mentioned && !repliedToMe && !onPost) return { kind: "ignore", reason: "group message not addressed to the bot" };
    if (handle)
      text = raw
        .replace(new RegExp(escapeRegExp(handle), "ig"), "")
        .replace(/\s{2,}/g, " ")
        .trim();
  }
  text = text.trim();
  if (!text && !images && !voice) return { kind: "ignore", reason: "empty text" };

  const userName = displayName(m.from);
  // Comments of a channel post live in a thread of the discussion group whose id
  // (`message_thread_id`) is the post's automatic forward: one user's comments under different
  // posts are different conversations. (Forum topics also carry a thread id; they are marked
  // `is_topic_message` and keep the per-user key.)
  const t = m as { message_thread_id?: number; is_topic_message?: boolean };
  const postThread = onPost ? (t.message_thread_id ?? post!.message_id) : isGroup && !t.is_topic_message ? t.message_thread_id : undefined;
  const threadKey = !isGroup ? `tg:${chat.id}` : postThread !== undefined ? `tg:${chat.id}:post:${postThread}:${m.from.id}` : `tg:${chat.id}:${m.from.id}`;
  return {
    kind: "message",
    message: {
      bot: bot.name,
      channel: "tg",
      kind: onPost ? "comments" : "messages",
      chatId: String(chat.id),
      userId: String(m.from.id),
      userName,
      text,
      ...(images ? { images } : {}),
      ...(voice ? { voice } : {}),
      ...(m.media_group_id ? { group: m.media_group_id } : {}),
      threadKey,
      dedupeKey: `${chat.id}:${m.message_id}`,
      channelMessageId: String(m.message_id),
      target: isGroup ? { reply_to_message_id: m.message_id } : {},
      ...(onPost && (post.text ?? post.caption)
        ? { vars: { post_text: (post.text ?? post.caption)!, post_date: new Date(post.date * 1000).toISOString() } }
        : {}),
      receivedMs: nowMs,
    },
  };
}

/**
 * The pictures of a message: of a photo (Bot API `Message.photo`, one `PhotoSize` per size) the
 * largest size whose `file_size` is not above `maxBytes` (the smallest when none is, so the
 * refusal is logged when the model is asked); a document whose `mime_type` is JPEG, PNG, WebP or
 * GIF (a picture sent as a file).
 */
export function pictures(m: Message, maxBytes: number): ImageRef[] | undefined {
  const photo = (m as Partial<Message.PhotoMessage>).photo;
  if (photo?.length) {
    const bySize = [...photo].sort((a, b) => (a.file_size ?? a.width * a.height * 3) - (b.file_size ?? b.width * b.height * 3));
    const fits = bySize.filter((p) => (p.file_size ?? 0) <= maxBytes);
    const p = fits[fits.length - 1] ?? bySize[0]!;
    return [{ file_id: p.file_id, mime: "image/jpeg", width: p.width, height: p.height, ...(p.file_size !== undefined ? { size: p.file_size } : {}) }];
  }
  const doc = (m as Partial<Message.DocumentMessage>).document;
  if (doc?.mime_type && IMAGE_MIMES.includes(doc.mime_type))
    return [{ file_id: doc.file_id, mime: doc.mime_type, ...(doc.file_size !== undefined ? { size: doc.file_size } : {}) }];
  return undefined;
}

/**
 * The voice of a message, for transcription (core/stages/transcribe.ts): Bot API `Message.voice`
 * (`Voice`: OGG/Opus), `audio` (`Audio`: a music file, its `mime_type`) or `video_note` (`VideoNote`:
 * a round MP4 video), with its `file_id`, `duration` (seconds) and `file_size`.
 */
export function voiceOf(m: Message): VoiceRef | undefined {
  const x = m as Partial<Message.VoiceMessage & Message.AudioMessage & Message.VideoNoteMessage>;
  const found: [VoiceRef["kind"], { file_id: string; duration: number; file_size?: number; mime_type?: string } | undefined, string | undefined][] = [
    ["voice", x.voice, "audio/ogg"],
    ["audio", x.audio, undefined],
    ["video_note", x.video_note, "video/mp4"],
  ];
  for (const [kind, f, mime] of found) {
    if (!f?.file_id) continue;
    const type = f.mime_type ?? mime;
    return {
      kind,
      file_id: f.file_id,
      duration_s: Math.max(0, Math.round(f.duration ?? 0)),
      ...(type ? { mime: type } : {}),
      ...(f.file_size !== undefined ? { size: f.file_size } : {}),
    };
  }
  return undefined;
}

/**
 * The bot blocked or unblocked by a user (Bot API `ChatMemberUpdated` in `my_chat_member`,
 * private chats), when `accepts.membership` (coaching stops writing to blocked users).
 */
function membership(u: Update.MyChatMemberUpdate["my_chat_member"], bot: BotConfig, nowMs: number, accepts: AcceptedUpdates): TelegramAction {
  if (!accepts.membership || u.chat.type !== "private") return { kind: "ignore", reason: "my_chat_member" };
  const status = u.new_chat_member.status;
  const change = status === "kicked" ? "blocked" : status === "member" ? "unblocked" : undefined;
  if (!change) return { kind: "ignore", reason: `my_chat_member ${status}` };
  return {
    kind: "message",
    message: privateMessage(bot, u.chat.id, u.from, `[my_chat_member: ${status}]`, `member:${u.chat.id}:${u.date}:${status}`, nowMs, { membership: change }),
  };
}

/**
 * A button press (Bot API `CallbackQuery` of an `inline_keyboard` button) in a private chat: a
 * pipeline message whose text is the button's `callback_data`, marked as a press.
 */
function buttonPress(q: CallbackQuery, bot: BotConfig, nowMs: number): TelegramAction {
  const data = "data" in q && typeof q.data === "string" ? q.data : undefined;
  const chat = q.message?.chat;
  if (data === undefined || !chat) return { kind: "ignore", reason: "callback query without data or message" };
  if (chat.type !== "private") return { kind: "ignore", reason: "button press outside a private chat" };
  return { kind: "message", callbackQueryId: q.id, message: privateMessage(bot, chat.id, q.from, data, `cb:${q.id}`, nowMs, { button: { data } }) };
}

/**
 * A shared contact (Bot API `Message.contact`, e.g. from a `request_contact` button) in a
 * private chat of a bot that accepts contacts: a pipeline message whose text tells the model the
 * phone, carrying the contact for the leads gate.
 */
function contactMessage(m: Message, c: Contact, bot: BotConfig, nowMs: number): TelegramAction {
  const name = [c.first_name, c.last_name].filter(Boolean).join(" ") || null;
  const phone = c.phone_number.trim();
  const text = `Мой контакт: ${name ? `${name}, ` : ""}${phone}`;
  const contact = { phone, name, userId: c.user_id !== undefined ? String(c.user_id) : null };
  return {
    kind: "message",
    message: privateMessage(bot, m.chat.id, m.from!, text, `${m.chat.id}:${m.message_id}`, nowMs, { channelMessageId: String(m.message_id), contact }),
  };
}

/** The text of a shared location: `📍 52.520008, 13.404954` (core/types `IncomingMessage.location`). */
export function locationText(latitude: number, longitude: number): string {
  return `📍 ${latitude.toFixed(6)}, ${longitude.toFixed(6)}`;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** A Bot API `User`'s display name: first and last name, else the username, else null. */
function displayName(u: { first_name?: string; last_name?: string; username?: string }): string | null {
  return [u.first_name, u.last_name].filter(Boolean).join(" ") || u.username || null;
}

/**
 * A pipeline message from a private chat that is not a text message (a membership change, a
 * button press, a shared contact): thread `tg:<chat_id>`, no channel message id to reply to.
 */
function privateMessage(
  bot: BotConfig,
  chatId: number,
  from: { id: number; first_name?: string; last_name?: string; username?: string },
  text: string,
  dedupeKey: string,
  nowMs: number,
  extra: Partial<IncomingMessage>,
): IncomingMessage {
  return {
    bot: bot.name,
    channel: "tg",
    kind: "messages",
    chatId: String(chatId),
    userId: String(from.id),
    userName: displayName(from),
    text,
    threadKey: `tg:${chatId}`,
    dedupeKey,
    channelMessageId: null,
    target: {},
    receivedMs: nowMs,
    ...extra,
  };
}
