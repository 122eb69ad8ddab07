import type { BotConfig } from "../../config/schema.js";
import type { ImageRef } from "../../core/images.js";
import type { IncomingMessage } from "../../core/types.js";
import type { VoiceRef } from "../../core/voice.js";

/** VK limit of one message's text, characters (messages.send). Comments use the same cut. */
export const VK_MAX_TEXT = 4096;

/** `peer_id` values from this one up are group chats (VK: 2000000000 + chat_id). */
const CHAT_PEER_BASE = 2_000_000_000;

/**
 * One event as VK sends it, through the Callback API (POST body) or the Bots Long Poll API
 * (an element of `updates`): `{type, object, group_id, event_id, v, secret?}`.
 */
export interface VkEvent {
  type: string;
  object?: unknown;
  group_id?: number;
  event_id?: string;
  v?: string;
  secret?: string;
}

/** A wall post as `wall_post_new` and `wall.getById` give it (fields used here). */
export interface VkPost {
  id: number;
  owner_id: number;
  from_id?: number;
  date?: number;
  text?: string;
  post_type?: string;
}

/** What the worker does with one event. */
export type VkAction =
  | { kind: "ignore"; reason: string }
  | { kind: "post"; post: { owner_id: string; post_id: string; text: string; posted_ms: number | null } }
  | { kind: "message"; message: IncomingMessage }
  /** A comment: the post's text is looked up (store or wall.getById) before it is submitted. */
  | { kind: "comment"; message: IncomingMessage; ownerId: string; postId: string };

/**
 * Translates a VK event into what the bot does with it (docs/vk.md):
 * - `message_new` (`object.message`, `object.client_info`) → a `messages` message, thread key
 *   `vk:dm:<peer_id>`, answered with messages.send to `peer_id`. Group chats (peer_id ≥ 2e9),
 *   messages from communities and messages without text, photo or voice are ignored. Photo
 *   attachments (of messages and comments) become `images` ({@link vkPhotos}), a voice message
 *   (`audio_message`) becomes `voice` ({@link vkVoice}; VK's transcript, when given, the text).
 * - `wall_reply_new` (a comment: `id`, `from_id`, `post_id`, `post_owner_id`, `text`) → a
 *   `comments` message, thread key `vk:post:<owner_id>_<post_id>:<from_id>`, answered with
 *   wall.createComment replying to it. Comments by the community itself are ignored.
 * - `wall_post_new` (a post) → stored for comment context and deadlines.
 * `vk.answer` chooses whether messages and comments are answered; other types are ignored.
 * Dedupe keys name the message itself (`dm:<peer_id>:<conversation_message_id>`,
 * `wall:<owner_id>_<post_id>:<comment_id>`), so a resent event (same `event_id`) and the same
 * message reaching us twice by different events are both duplicates.
 * @param nowMs receive time, epoch ms UTC
 */
export function translateEvent(event: VkEvent, bot: BotConfig, nowMs: number): VkAction {
  const vk = bot.vk!;
  const o = (event.object ?? {}) as Record<string, unknown>;
  switch (event.type) {
    case "message_new": {
      if (!vk.answer.includes("messages")) return { kind: "ignore", reason: "messages are not answered (vk.answer)" };
      const m = (o.message ?? o) as Record<string, unknown>;
      const peerId = int(m.peer_id);
      const fromId = int(m.from_id);
      if (peerId === undefined || fromId === undefined) return { kind: "ignore", reason: "message_new without peer_id/from_id" };
      if (peerId >= CHAT_PEER_BASE) return { kind: "ignore", reason: "group chat message" };
      if (fromId <= 0) return { kind: "ignore", reason: "message from a community" };
      const typed = typeof m.text === "string" ? m.text.trim() : "";
      const images = vkPhotos(m.attachments);
      const voice = vkVoice(m.attachments);
      // VK's own transcript is the text at once: no download, no transcription call.
      const text = voice?.transcript ? [typed, voice.transcript].filter(Boolean).join("\n") : typed;
      if (!text && !images && !voice) return { kind: "ignore", reason: "no text, photo or voice (sticker, other attachment...)" };
      const msgId = int(m.conversation_message_id) ?? int(m.id);
      if (msgId === undefined) return { kind: "ignore", reason: "message_new without id" };
      return {
        kind: "message",
        message: {
          bot: bot.name,
          channel: "vk",
          kind: "messages",
          chatId: String(peerId),
          userId: String(fromId),
          userName: null,
          text,
          ...(images ? { images } : {}),
          ...(voice ? { voice } : {}),
          threadKey: `vk:dm:${peerId}`,
          dedupeKey: `dm:${peerId}:${msgId}`,
          channelMessageId: String(int(m.id) ?? msgId),
          target: { peer_id: peerId },
          receivedMs: nowMs,
        },
      };
    }
    case "wall_reply_new": {
      if (!vk.answer.includes("comments")) return { kind: "ignore", reason: "comments are not answered (vk.answer)" };
      const commentId = int(o.id);
      const fromId = int(o.from_id);
      const postId = int(o.post_id);
      const ownerId = int(o.post_owner_id) ?? int(o.owner_id);
      if (commentId === undefined || fromId === undefined || postId === undefined || ownerId === undefined)
        return { kind: "ignore", reason: "wall_reply_new without id/from_id/post_id/post_owner_id" };
      if (fromId === -vk.group_id) return { kind: "ignore", reason: "the community's own comment" };
      const text = typeof o.text === "string" ? o.text.trim() : "";
      const images = vkPhotos(o.attachments);
      if (!text && !images) return { kind: "ignore", reason: "comment without text or photo" };
      const post = `${ownerId}_${postId}`;
      return {
        kind: "comment",
        ownerId: String(ownerId),
        postId: String(postId),
        message: {
          bot: bot.name,
          channel: "vk",
          kind: "comments",
          chatId: post,
          userId: String(fromId),
          userName: null,
          text,
          ...(images ? { images } : {}),
          threadKey: `vk:post:${post}:${fromId}`,
          dedupeKey: `wall:${post}:${commentId}`,
          channelMessageId: String(commentId),
          target: { owner_id: ownerId, post_id: postId, comment_id: commentId },
          receivedMs: nowMs,
        },
      };
    }
    case "wall_post_new": {
      const p = o as Partial<VkPost>;
      const postId = int(p.id);
      const ownerId = int(p.owner_id);
      if (postId === undefined || ownerId === undefined) return { kind: "ignore", reason: "wall_post_new without id/owner_id" };
      return { kind: "post", post: postRecord(p as VkPost) };
    }
    default:
      return { kind: "ignore", reason: `event type ${event.type}` };
  }
}

/**
 * The photos among VK attachments (`[{type: "photo", photo: {sizes: [{type, url, width,
 * height}], orig_photo?}}]`, message and comment objects alike): per photo, the URL of its
 * largest size (by pixels) on VK's CDN. The picture is downloaded by us when the model is asked
 * (docs/images.md says why), so the URL is all that is stored.
 */
export function vkPhotos(attachments: unknown): ImageRef[] | undefined {
  if (!Array.isArray(attachments)) return undefined;
  const out: ImageRef[] = [];
  for (const a of attachments as Array<{ type?: unknown; photo?: { sizes?: unknown; orig_photo?: unknown } }>) {
    if (a?.type !== "photo" || !a.photo) continue;
    const sizes = [...(Array.isArray(a.photo.sizes) ? a.photo.sizes : []), ...(a.photo.orig_photo ? [a.photo.orig_photo] : [])] as Array<{
      url?: unknown;
      width?: unknown;
      height?: unknown;
    }>;
    let best: { url: string; width: number; height: number } | undefined;
    for (const s of sizes) {
      if (typeof s?.url !== "string" || !/^https?:\/\//.test(s.url)) continue;
      const w = Number(s.width) || 0;
      const h = Number(s.height) || 0;
      if (!best || w * h > best.width * best.height) best = { url: s.url, width: w, height: h };
    }
    if (best) out.push({ url: best.url, ...(best.width ? { width: best.width, height: best.height } : {}) });
  }
  return out.length ? out : undefined;
}

/**
 * The voice message among VK attachments (`{type: "audio_message", audio_message: {duration,
 * link_ogg, link_mp3, transcript?, transcript_state?}}`): its download URL (`link_ogg`, else
 * `link_mp3`) and duration in seconds; VK's own `transcript`, when VK has finished it
 * (`transcript_state` `done` or absent), is kept as the text (`transcribed_by: channel`, free).
 */
export function vkVoice(attachments: unknown): VoiceRef | undefined {
  if (!Array.isArray(attachments)) return undefined;
  for (const a of attachments as Array<{ type?: unknown; audio_message?: Record<string, unknown> }>) {
    const v = a?.type === "audio_message" ? a.audio_message : undefined;
    if (!v) continue;
    const url = [v.link_ogg, v.link_mp3].find((l): l is string => typeof l === "string" && /^https?:\/\//.test(l));
    const transcript = typeof v.transcript === "string" && (v.transcript_state === undefined || v.transcript_state === "done") ? v.transcript.trim() : "";
    if (!url && !transcript) continue;
    return {
      kind: "audio_message",
      ...(url ? { url, mime: url === v.link_ogg ? "audio/ogg" : "audio/mpeg" } : {}),
      duration_s: Math.max(0, Math.round(Number(v.duration) || 0)),
      ...(transcript ? { transcript, transcribed_by: "channel" as const } : {}),
    };
  }
  return undefined;
}

/** The stored form of a post (`posts` row fields). */
export function postRecord(p: VkPost): { owner_id: string; post_id: string; text: string; posted_ms: number | null } {
  return {
    owner_id: String(p.owner_id),
    post_id: String(p.id),
    text: typeof p.text === "string" ? p.text : "",
    posted_ms: typeof p.date === "number" ? p.date * 1000 : null,
  };
}

function int(v: unknown): number | undefined {
  if (typeof v === "number" && Number.isInteger(v)) return v;
  if (typeof v === "string" && /^-?\d+$/.test(v)) return Number(v);
  return undefined;
}
