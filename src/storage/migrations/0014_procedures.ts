import { sql, type Kysely, type Migration } from "kysely";
import type { DialectHelpers } from "../migrations.js";

/**
 * Character set and collation of every string parameter: those of the tables (`tableEnd` in
 * src/storage/migrations.ts). Undeclared, a parameter takes the database's default character set,
 * which may be latin1 (Cyrillic and emoji refused or turned into `?`), and its collation, which
 * compared with a column of another collation fails with "Illegal mix of collations".
 */
const CS = "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci";

/**
 * The fencing condition of src/storage/owners.ts `fenceHolds`, on the procedures' parameters.
 * InnoDB takes a shared lock on the `bot_owners` row a subquery of an UPDATE reads, kept to the
 * commit, so a take-over waits for the transaction, as on the transaction path.
 */
const FENCE = "EXISTS (SELECT 1 FROM bot_owners WHERE bot_owners.bot = p_fence_bot AND bot_owners.owner = p_fence_owner AND bot_owners.epoch = p_fence_epoch)";

/**
 * `bots_reserve`: src/storage/balance.ts `BalanceRepo.reserve` in one round trip. In one
 * transaction: the conditional update of the account (floor and, when `p_fence_bot` is not
 * NULL, the fence, in the same statement), then the ledger row with `balance_after` copied from
 * the account by the insert itself. When the update changed no row, nothing is written and, with
 * a fence, whether the fence still holds is read. One result set of one row:
 * `id` and `balance_after` of the ledger row (both NULL when nothing was reserved) and
 * `fence_holds` (1 without a fence).
 *
 * ROW_COUNT() after an UPDATE counts rows changed, or rows matched when the client connected
 * with CLIENT_FOUND_ROWS (mysql2 does, and so Kysely's `numAffectedRows` on the transaction path
 * counts matched rows too). Both agree here: the update always changes `balance` or, for an
 * amount of 0, `updated_ms` (unless two such reserves fall in the same millisecond, where only
 * the found-rows count, which mysql2 gives, says 1).
 */
const RESERVE = `CREATE PROCEDURE bots_reserve(
  IN p_account VARCHAR(255) ${CS},
  IN p_amount BIGINT,
  IN p_floor BIGINT,
  IN p_message_id BIGINT,
  IN p_now BIGINT,
  IN p_fence_bot VARCHAR(255) ${CS},
  IN p_fence_owner VARCHAR(255) ${CS},
  IN p_fence_epoch BIGINT
)
MODIFIES SQL DATA
SQL SECURITY INVOKER
BEGIN
  DECLARE v_rows BIGINT DEFAULT 0;
  DECLARE v_id BIGINT DEFAULT NULL;
  DECLARE v_after BIGINT DEFAULT NULL;
  DECLARE v_fence_holds BIGINT DEFAULT 1;
  DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
  START TRANSACTION;
  IF p_fence_bot IS NULL THEN
    UPDATE balance_accounts SET balance = balance - p_amount, updated_ms = p_now
      WHERE account = p_account AND balance - p_amount >= p_floor;
    SET v_rows = ROW_COUNT();
  ELSE
    UPDATE balance_accounts SET balance = balance - p_amount, updated_ms = p_now
      WHERE account = p_account AND balance - p_amount >= p_floor AND ${FENCE};
    SET v_rows = ROW_COUNT();
  END IF;
  IF v_rows = 1 THEN
    INSERT INTO balance_ledger (account, delta, reason, message_id, ref_id, note, created_ms, balance_after)
      SELECT account, -p_amount, 'reserve', p_message_id, NULL, NULL, p_now, balance FROM balance_accounts WHERE account = p_account;
    SET v_id = LAST_INSERT_ID();
    SELECT balance_after INTO v_after FROM balance_ledger WHERE id = v_id;
    COMMIT;
  ELSE
    IF p_fence_bot IS NOT NULL THEN
      SELECT COUNT(*) INTO v_fence_holds FROM bot_owners WHERE bot = p_fence_bot AND owner = p_fence_owner AND epoch = p_fence_epoch;
    END IF;
    ROLLBACK;
  END IF;
  SELECT v_id AS id, v_after AS balance_after, v_fence_holds AS fence_holds;
END`;

/**
 * `bots_settle`: src/storage/messages.ts `MessagesRepo.settle` in one round trip. In one
 * transaction: the incoming row becomes `answered` unless it is already (a NULL `p_parts` keeps
 * `parts_sent`; with a fence, only while it holds or the row is `unconfirmed`, in the same
 * statement), then the outgoing row is inserted. No row changed: the answer already stored for
 * an `answered` row is the result (a settle run again after its commit's reply was lost);
 * failing that, with a fence nothing is written, without one the answer is stored (a missing
 * incoming row). One result set of one row: `id` of the outgoing row (NULL when fenced) and
 * `fenced` (0 or 1). ROW_COUNT(): see `RESERVE` (the update always sets `status` and
 * `updated_ms`; mysql2's found-rows count says 1 for a matched row either way). Changed by
 * migration 0015 (src/storage/migrations/0015_settle_again.ts), which replaces the first version.
 */
const SETTLE = `CREATE PROCEDURE bots_settle(
  IN p_id BIGINT,
  IN p_cost BIGINT,
  IN p_parts BIGINT,
  IN p_fence_bot VARCHAR(255) ${CS},
  IN p_fence_owner VARCHAR(255) ${CS},
  IN p_fence_epoch BIGINT,
  IN p_bot VARCHAR(255) ${CS},
  IN p_channel VARCHAR(255) ${CS},
  IN p_thread_key VARCHAR(255) ${CS},
  IN p_chat_id VARCHAR(255) ${CS},
  IN p_text LONGTEXT ${CS},
  IN p_channel_message_id VARCHAR(255) ${CS},
  IN p_model VARCHAR(255) ${CS},
  IN p_prompt_tokens BIGINT,
  IN p_completion_tokens BIGINT,
  IN p_latency_ms BIGINT,
  IN p_created_ms BIGINT
)
MODIFIES SQL DATA
SQL SECURITY INVOKER
BEGIN
  DECLARE v_rows BIGINT DEFAULT 0;
  DECLARE v_id BIGINT DEFAULT NULL;
  DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
  START TRANSACTION;
  IF p_fence_bot IS NULL THEN
    UPDATE messages SET status = 'answered', error = NULL, cost = p_cost, updated_ms = p_created_ms, delivery = NULL, parts_sent = COALESCE(p_parts, parts_sent)
      WHERE id = p_id AND status <> 'answered';
  ELSE
    UPDATE messages SET status = 'answered', error = NULL, cost = p_cost, updated_ms = p_created_ms, delivery = NULL, parts_sent = COALESCE(p_parts, parts_sent)
      WHERE id = p_id AND status <> 'answered' AND (status = 'unconfirmed' OR ${FENCE});
  END IF;
  SET v_rows = ROW_COUNT();
  IF v_rows = 0 THEN
    SELECT MAX(o.id) INTO v_id FROM messages i JOIN messages o ON o.reply_to_id = i.id AND o.direction = 'out'
      WHERE i.id = p_id AND i.status = 'answered';
  END IF;
  IF v_id IS NULL AND (v_rows = 1 OR p_fence_bot IS NULL) THEN
    INSERT INTO messages (bot, channel, direction, status, thread_key, chat_id, user_id, user_name, text, text_hash, dedupe_key, channel_message_id,
        reply_to_id, model, prompt_tokens, completion_tokens, cost, latency_ms, error, meta, created_ms, updated_ms)
      VALUES (p_bot, p_channel, 'out', 'sent', p_thread_key, p_chat_id, NULL, NULL, p_text, NULL, NULL, p_channel_message_id,
        p_id, p_model, p_prompt_tokens, p_completion_tokens, p_cost, p_latency_ms, NULL, NULL, p_created_ms, p_created_ms);
    SET v_id = LAST_INSERT_ID();
  END IF;
  IF v_id IS NULL THEN ROLLBACK; ELSE COMMIT; END IF;
  SELECT v_id AS id, IF(v_id IS NULL, 1, 0) AS fenced;
END`;

/**
 * The stored procedures of an answer on MySQL/MariaDB, by name: their `CREATE PROCEDURE`
 * statements. A later change of one gets a new name (or a migration that drops and creates
 * it), since instances of the previous version may still call it.
 */
export const ANSWER_PROCEDURES: Readonly<Record<string, string>> = { bots_reserve: RESERVE, bots_settle: SETTLE };

/**
 * Driver codes of a user not allowed to create routines (no CREATE ROUTINE, or SUPER required
 * with binary logging on an older server).
 */
const NOT_ALLOWED = new Set([
  "ER_DBACCESS_DENIED_ERROR",
  "ER_PROCACCESS_DENIED_ERROR",
  "ER_SPECIFIC_ACCESS_DENIED_ERROR",
  "ER_TABLEACCESS_DENIED_ERROR",
  "ER_BINLOG_CREATE_ROUTINE_NEED_SUPER",
]);

/** True when `error` says the user may not create or drop routines. */
export function isRoutinePrivilegeError(error: unknown): boolean {
  const e = error as { driverCode?: unknown; code?: unknown } | null;
  const code = typeof e?.driverCode === "string" ? e.driverCode : e?.code;
  return typeof code === "string" && NOT_ALLOWED.has(code);
}

/**
 * Creates the procedures named, each dropped first when `replace` (so a re-run is safe).
 * @throws what the database throws (a user without CREATE ROUTINE: see {@link isRoutinePrivilegeError})
 */
export async function createAnswerProcedures(db: Kysely<any>, names: readonly string[] = Object.keys(ANSWER_PROCEDURES), replace = true): Promise<void> {
  for (const name of names) {
    const body = ANSWER_PROCEDURES[name];
    if (!body) throw new Error(`no procedure ${name}`);
    if (replace) await sql.raw(`DROP PROCEDURE IF EXISTS ${name}`).execute(db);
    await sql.raw(body).execute(db);
  }
}

/**
 * MySQL/MariaDB: the stored procedures `bots_reserve` and `bots_settle`, which make the two
 * transactions of every answer one round trip each (src/storage/procedures.ts). A user without
 * the CREATE ROUTINE privilege gets no procedures and the migration still succeeds: the
 * repositories then keep the transactions (docs/architecture.md, "Storage"). SQLite: nothing
 * (it has no round trips).
 */
export function proceduresMigration({ dialect }: DialectHelpers): Migration {
  return {
    async up(db: Kysely<any>) {
      if (dialect !== "mysql") return;
      try {
        await createAnswerProcedures(db);
      } catch (error) {
        if (!isRoutinePrivilegeError(error)) throw error;
      }
    },
  };
}
