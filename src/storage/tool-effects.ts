import { createHash } from "node:crypto";
import type { Kysely, Transaction } from "kysely";
import type { Schema } from "./schema.js";

/**
 * The identity of one tool call's effect: the incoming message being answered, the tool, and
 * its arguments after the tool normalised them (trimmed, phone in E.164, …). The same key seen
 * again (a model looping on the call, a retry, a replay or recovery of the message) means the
 * effect happened already.
 */
export interface ToolEffectKey {
  bot: string;
  /** `messages.id` of the incoming message. */
  message_id: number;
  tool: string;
  /** Normalised arguments; key order does not matter. */
  args: Record<string, unknown>;
}

/** Canonical JSON (object keys sorted, undefined dropped) of a value. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v && typeof v === "object") {
    const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined);
    return `{${entries
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, x]) => `${JSON.stringify(k)}:${canonical(x)}`)
      .join(",")}}`;
  }
  return JSON.stringify(v ?? null);
}

/** SHA-256 (hex) of the canonical JSON of `args`: the `tool_effects.args_hash` column. */
export function argsHash(args: Record<string, unknown>): string {
  return createHash("sha256").update(canonical(args)).digest("hex");
}

/**
 * Inside the effect's transaction: the earlier effect of this call, if any.
 * @returns `{ ref }` (the row it wrote, or null), or undefined when the call is new
 */
export async function priorEffect(trx: Transaction<Schema> | Kysely<Schema>, key: ToolEffectKey): Promise<{ ref: number | null } | undefined> {
  const row = await trx
    .selectFrom("tool_effects")
    .select("ref")
    .where("bot", "=", key.bot)
    .where("message_id", "=", key.message_id)
    .where("tool", "=", key.tool)
    .where("args_hash", "=", argsHash(key.args))
    .executeTakeFirst();
  return row && { ref: row.ref === null ? null : Number(row.ref) };
}

/**
 * Inside the effect's transaction: records that the call took effect, so the effect and its key
 * commit together. A concurrent twin fails here on the unique key and its transaction rolls back.
 * @param ref the row the effect wrote; `at` epoch ms UTC
 * @throws the driver's unique violation when the key exists
 */
export async function recordEffect(trx: Transaction<Schema>, key: ToolEffectKey, ref: number | null, at: number): Promise<void> {
  await trx
    .insertInto("tool_effects")
    .values({ bot: key.bot, message_id: key.message_id, tool: key.tool, args_hash: argsHash(key.args), ref, created_ms: at })
    .execute();
}
