import type { Store } from "../../src/storage/index.js";

/** A message row written straight into `messages`; unset fields get a fixed value (bot `shop`, thread `tg:1`, chat and user `1`). */
export interface TestRow {
  direction: "in" | "out";
  status: string;
  text?: string;
  bot?: string;
  thread?: string;
  reply_to_id?: number;
  dedupe_key?: string;
  /** epoch ms @defaultValue 1 */
  created_ms?: number;
}

/** Stores a message row as the pipeline would, without the pipeline, and returns its id. */
export async function storeRow(store: Store, r: TestRow): Promise<number> {
  const t = r.created_ms ?? 1;
  const res = await store.database.db
    .insertInto("messages")
    .values({
      bot: r.bot ?? "shop",
      channel: "tg",
      direction: r.direction,
      status: r.status,
      thread_key: r.thread ?? "tg:1",
      chat_id: "1",
      user_id: "1",
      text: r.text ?? "t",
      dedupe_key: r.dedupe_key ?? null,
      reply_to_id: r.reply_to_id ?? null,
      created_ms: t,
      updated_ms: t,
    } as never)
    .executeTakeFirst();
  return Number(res.insertId);
}
