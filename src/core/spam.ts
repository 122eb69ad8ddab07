import type { BotConfig } from "../config/schema.js";
import type { MessagesRepo } from "../storage/messages.js";

const LINK = /(https?:\/\/|www\.)\S+|\b[a-z0-9-]{2,}\.(ru|com|net|org|info|io|me|рф|su|xyz|link|click|top|biz)\b|t\.me\/|@[a-z0-9_]{5,}bot\b/i;

/**
 * Decides whether an incoming message is spam (docs/architecture.md, "One message's path"). Counters live in the database
 * (the stored incoming messages), so several processes share them.
 * @param nowMs epoch ms UTC
 * @returns the reason (`too_long`, `link`, `stopword`, `flood`, `duplicate`) or null
 */
export async function spamVerdict(
  spam: BotConfig["spam"],
  repo: MessagesRepo,
  m: { bot: string; userId: string | null; text: string },
  nowMs: number,
): Promise<string | null> {
  if (m.text.length > spam.max_length) return "too_long";
  if (spam.block_links && LINK.test(m.text)) return "link";
  const lower = m.text.toLowerCase();
  const word = spam.stopwords.find((w) => w && lower.includes(w.toLowerCase()));
  if (word) return "stopword";
  if (m.userId === null) return null;
  const dupWindow = spam.duplicate_window_s > 0 && m.text.trim() ? { text: m.text, sinceMs: nowMs - spam.duplicate_window_s * 1000 } : undefined;
  const { recent, duplicate } = await repo.userActivity(m.bot, m.userId, nowMs - 60_000, dupWindow);
  if (recent >= spam.max_per_minute) return "flood";
  if (duplicate) return "duplicate";
  return null;
}
