import type { Generated, Kysely, Selectable } from "kysely";
import { isUniqueViolation } from "./db.js";
import type { Schema } from "./schema.js";

/** Table `posts` (migration 0002): wall posts kept for comment context and deadlines. */
export interface PostsTable {
  id: Generated<number>;
  bot: string;
  channel: string;
  /** VK `owner_id` of the wall (negative for a community), as a decimal string. */
  owner_id: string;
  /** VK post `id` on that wall, as a decimal string. */
  post_id: string;
  text: string;
  /** The post's own date (VK `date` × 1000), epoch ms UTC; null when unknown. */
  posted_ms: number | null;
  created_ms: number;
  updated_ms: number;
}

/** A stored post (times epoch ms UTC; `posted_ms` null when unknown). */
export type PostRow = Omit<Selectable<PostsTable>, "id" | "updated_ms">;

/** Wall posts by (bot, owner_id, post_id). */
export class PostsRepo {
  constructor(
    private readonly db: Kysely<Schema>,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Stores a post, or updates its text and date when it is stored already (a resent
   * `wall_post_new`, or a later fetch).
   * @throws the driver's error when the database fails
   */
  async upsert(p: { bot: string; channel: string; owner_id: string; post_id: string; text: string; posted_ms: number | null }): Promise<void> {
    const now = this.now();
    try {
      await this.db
        .insertInto("posts")
        .values({ ...p, created_ms: now, updated_ms: now })
        .execute();
    } catch (error) {
      if (!isUniqueViolation(error)) throw error;
      await this.db
        .updateTable("posts")
        .set({ text: p.text, posted_ms: p.posted_ms, updated_ms: now })
        .where("bot", "=", p.bot)
        .where("owner_id", "=", p.owner_id)
        .where("post_id", "=", p.post_id)
        .execute();
    }
  }

  /** The stored post, if any. */
  async get(bot: string, ownerId: string, postId: string): Promise<PostRow | undefined> {
    const row = await this.db
      .selectFrom("posts")
      .select(["bot", "channel", "owner_id", "post_id", "text", "posted_ms", "created_ms"])
      .where("bot", "=", bot)
      .where("owner_id", "=", ownerId)
      .where("post_id", "=", postId)
      .executeTakeFirst();
    // mysql2 may return BIGINT as strings.
    return row && { ...row, posted_ms: row.posted_ms === null ? null : Number(row.posted_ms), created_ms: Number(row.created_ms) };
  }
}
