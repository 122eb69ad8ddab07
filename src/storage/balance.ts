import { sql, type Kysely, type Selectable, type Transaction } from "kysely";
import { BalanceError, FencedError } from "../errors.js";
import { isUniqueViolation, transact } from "./db.js";
import { fenceHolds, fenceStillHolds, type OwnerFence } from "./owners.js";
import { PreparedQueries, type Slot } from "./prepared.js";
import { answerProcedures } from "./procedures.js";
import type { BalanceLedgerTable, Schema } from "./schema.js";

/** One row of the ledger. Amounts in hundredths of a credit; `created_ms` epoch ms UTC. */
export type LedgerRow = Selectable<BalanceLedgerTable>;

/** An account and its balance in hundredths of a credit. */
export interface AccountRow {
  account: string;
  balance: number;
  updated_ms: number;
}

/** Largest amount a single top-up may carry: 1,000,000,000 credits in hundredths. */
export const MAX_TOPUP = 100_000_000_000;

/**
 * Prepaid balances and their append-only ledger. Every movement updates the account and writes
 * a ledger row with the balance after it, in one transaction, so the ledger always sums to the
 * balance.
 */
export class BalanceRepo {
  /**
   * @param dialect the database's: SQLite and MariaDB (10.5 and later) write a ledger row and hand
   * its id and balance back in one statement (`INSERT … SELECT … RETURNING`); MySQL reads the
   * row back. On MySQL/MariaDB {@link reserve} calls the stored procedure `bots_reserve` when the
   * database has it (migration 0014). @defaultValue "sqlite"
   */
  constructor(
    private readonly db: Kysely<Schema>,
    private readonly now: () => number = Date.now,
    private readonly dialect: "sqlite" | "mysql" = "sqlite",
  ) {}

  /** The statements of every answer (reserve, its ledger row), compiled once per shape. */
  private readonly prepared = new PreparedQueries();

  /** Whether the server takes `INSERT … RETURNING`: read once (MySQL servers do not, MariaDB 10.5 and later do). */
  private returning?: Promise<boolean>;

  /** The account, or undefined if it never had a movement. */
  async get(account: string): Promise<AccountRow | undefined> {
    const row = await this.db.selectFrom("balance_accounts").select(["account", "balance", "updated_ms"]).where("account", "=", account).executeTakeFirst();
    return row && { account: row.account, balance: Number(row.balance), updated_ms: Number(row.updated_ms) };
  }

  /** Every account, by name. */
  async list(): Promise<AccountRow[]> {
    const rows = await this.db.selectFrom("balance_accounts").select(["account", "balance", "updated_ms"]).orderBy("account").execute();
    return rows.map((r) => ({ account: r.account, balance: Number(r.balance), updated_ms: Number(r.updated_ms) }));
  }

  /**
   * Adds money to an account, creating it if needed.
   * @param amount hundredths of a credit, 1 … {@link MAX_TOPUP}
   * @returns the ledger row (reason `topup`)
   * @throws BalanceError when the amount is not a positive integer within the limit
   */
  async topUp(account: string, amount: number, note?: string): Promise<LedgerRow> {
    if (!Number.isSafeInteger(amount) || amount <= 0 || amount > MAX_TOPUP) {
      throw new BalanceError("BALANCE_AMOUNT_INVALID", `top-up amount must be a positive whole number of hundredths up to ${MAX_TOPUP}, got ${amount}`);
    }
    // Create the account in its own statement: inside the transaction, INSERT IGNORE on an
    // existing row takes a shared lock that the UPDATE must upgrade, and InnoDB deadlocks
    // concurrent top-ups on that upgrade. The transaction below then starts with the exclusive lock.
    const t0 = this.now();
    await this.db.insertInto("balance_accounts").values({ account, balance: 0, created_ms: t0, updated_ms: t0 }).orIgnore().execute();
    return transact(this.db, async (trx) => {
      const t = this.now();
      await trx
        .updateTable("balance_accounts")
        .set({ balance: sql`balance + ${amount}`, updated_ms: t })
        .where("account", "=", account)
        .execute();
      return this.writeLedger(trx, { account, delta: amount, reason: "topup", message_id: null, ref_id: null, note: note ?? null, created_ms: t });
    });
  }

  /**
   * Corrects an account by a signed amount (a top-up to the wrong account, a goodwill credit):
   * one conditional update that never takes the balance below zero, plus an `adjust` ledger row
   * with the note, in one transaction. The ledger stays append-only: nothing is edited or removed,
   * so the ledger still sums to the balance.
   * @param delta signed hundredths, not 0, |delta| ≤ {@link MAX_TOPUP}
   * @param note why (required: it is the only trace of the reason)
   * @returns the ledger row (reason `adjust`)
   * @throws BalanceError `BALANCE_ACCOUNT_UNKNOWN` when the account never had a movement,
   * `BALANCE_BELOW_ZERO` when the balance cannot give `-delta` (nothing written)
   */
  async adjust(account: string, delta: number, note: string): Promise<LedgerRow> {
    if (!Number.isSafeInteger(delta) || delta === 0 || Math.abs(delta) > MAX_TOPUP)
      throw new BalanceError("BALANCE_AMOUNT_INVALID", `adjustment must be a non-zero whole number of hundredths up to ${MAX_TOPUP}, got ${delta}`);
    if (!note.trim()) throw new BalanceError("BALANCE_NOTE_REQUIRED", "an adjustment needs a note saying why");
    return transact(this.db, async (trx) => {
      const t = this.now();
      const res = await trx
        .updateTable("balance_accounts")
        .set({ balance: sql`balance + ${delta}`, updated_ms: t })
        .where("account", "=", account)
        .where(sql<boolean>`balance + ${delta} >= 0`)
        .executeTakeFirst();
      if (Number(res.numUpdatedRows) !== 1) {
        const acc = await trx.selectFrom("balance_accounts").select("balance").where("account", "=", account).executeTakeFirst();
        if (!acc) throw new BalanceError("BALANCE_ACCOUNT_UNKNOWN", `account '${account}' has no ledger`);
        throw new BalanceError(
          "BALANCE_BELOW_ZERO",
          `account '${account}' holds ${formatCredits(Number(acc.balance))}: taking ${formatCredits(-delta)} would leave it below zero`,
          { hint: "adjust by at most the balance" },
        );
      }
      return this.writeLedger(trx, { account, delta, reason: "adjust", message_id: null, ref_id: null, note: note.trim(), created_ms: t });
    });
  }

  /**
   * Reserves the cost of one reply: a conditional update that never takes the balance below
   * `floor`, plus a ledger row, in one transaction. Safe under any concurrency, across processes.
   * On MySQL/MariaDB with the procedure `bots_reserve` (migration 0014) that transaction is one
   * CALL (one round trip), else BEGIN, the update, the ledger insert and COMMIT; a deadlock or
   * lock wait restarts it either way.
   * @param amount hundredths of a credit (500 = 5.00 credits); 0 reserves nothing and succeeds
   * @param floor hundredths the balance must stay at or above (the bot's `stop_below`)
   * @param messageId the incoming message the reply is for
   * @param fence scale-out: reserve only while this instance owns the bot at this epoch (same statement)
   * @returns the ledger row (reason `reserve`), or null when the balance cannot pay
   * @throws FencedError when `fence` no longer holds (nothing reserved)
   */
  async reserve(account: string, amount: number, floor: number, messageId: number | null, fence?: OwnerFence): Promise<LedgerRow | null> {
    if (this.dialect === "mysql") {
      const procs = answerProcedures(this.db);
      if (await procs.has("bots_reserve")) {
        const t = this.now();
        // The same statements in one round trip (src/storage/migrations/0014_procedures.ts).
        const row = await procs.call<{ id: unknown; balance_after: unknown; fence_holds: unknown }>("bots_reserve", [
          account,
          amount,
          floor,
          messageId,
          t,
          fence?.bot ?? null,
          fence?.owner ?? null,
          fence?.epoch ?? null,
        ]);
        if (row) {
          if (row.id === null || row.id === undefined) {
            if (fence && Number(row.fence_holds) !== 1) throw new FencedError(fence.bot, fence.epoch);
            return null;
          }
          return {
            id: Number(row.id),
            account,
            delta: -amount,
            balance_after: Number(row.balance_after),
            reason: "reserve",
            message_id: messageId,
            ref_id: null,
            note: null,
            created_ms: t,
          };
        }
        // Not callable (dropped, not allowed): nothing ran; the transaction below does the same.
      }
    }
    return transact(this.db, async (trx) => {
      const t = this.now();
      const res = await this.prepared.run(
        trx,
        `reserve|${fence !== undefined}`,
        (p) => {
          let q = trx
            .updateTable("balance_accounts")
            .set({ balance: sql`balance - ${p("amount")}`, updated_ms: p<number>("now") })
            .where("account", "=", p("account"))
            .where(sql<boolean>`balance - ${p("amount")} >= ${p("floor")}`);
          if (fence) q = q.where(fenceHolds({ bot: p("fence_bot"), owner: p("fence_owner"), epoch: p<number>("fence_epoch") }));
          return q;
        },
        { amount, now: t, account, floor, ...(fence ? { fence_bot: fence.bot, fence_owner: fence.owner, fence_epoch: fence.epoch } : {}) },
      );
      if (Number(res.numAffectedRows) !== 1) {
        if (fence && !(await fenceStillHolds(trx, fence))) throw new FencedError(fence.bot, fence.epoch);
        return null;
      }
      return this.writeLedger(trx, { account, delta: -amount, reason: "reserve", message_id: messageId, ref_id: null, note: null, created_ms: t });
    });
  }

  /**
   * Gives a reservation back. Idempotent: a second refund of the same reservation does nothing.
   * @param reservation the ledger row returned by {@link reserve}
   * @param fence scale-out: refund only while this instance owns the bot at this epoch (else the
   * new owner's recovery refunds it)
   * @returns the refund's ledger row, or null if it had been refunded already
   * @throws FencedError when `fence` no longer holds (nothing refunded)
   */
  async refund(reservation: Pick<LedgerRow, "id" | "account" | "delta" | "message_id">, note?: string, fence?: OwnerFence): Promise<LedgerRow | null> {
    const amount = -Number(reservation.delta);
    try {
      return await transact(this.db, async (trx) => {
        const t = this.now();
        let q = trx
          .updateTable("balance_accounts")
          .set({ balance: sql`balance + ${amount}`, updated_ms: t })
          .where("account", "=", reservation.account);
        if (fence) q = q.where(fenceHolds(fence));
        const res = await q.executeTakeFirst();
        if (fence && Number(res.numUpdatedRows) !== 1) throw new FencedError(fence.bot, fence.epoch);
        return this.writeLedger(trx, {
          account: reservation.account,
          delta: amount,
          reason: "refund",
          message_id: reservation.message_id,
          ref_id: reservation.id,
          note: note ?? null,
          created_ms: t,
        });
      });
    } catch (error) {
      if (isUniqueViolation(error)) return null;
      throw error;
    }
  }

  /** The reservation made for a message that has not been refunded, if any. */
  async openReservation(messageId: number): Promise<LedgerRow | undefined> {
    return this.db
      .selectFrom("balance_ledger as r")
      .selectAll("r")
      .where("r.message_id", "=", messageId)
      .where("r.reason", "=", "reserve")
      .where((eb) => eb.not(eb.exists(eb.selectFrom("balance_ledger as f").select("f.id").whereRef("f.ref_id", "=", "r.id"))))
      .orderBy("r.id", "desc")
      .executeTakeFirst()
      .then((r) => r && normaliseLedger(r));
  }

  /**
   * Reservations of a bot's messages that were neither refunded nor settled by an answer: the
   * ledger's `reserve` rows with no refund whose message is not `answered`, `unconfirmed`,
   * `delivering` or `partial`, nor a `sent` proactive message (those keep their charge). A crash between
   * reserving and answering leaves such rows; recovery gives them back.
   * @returns the reservation rows, oldest first, each with its message's status
   */
  async openReservationsOfBot(bot: string): Promise<Array<LedgerRow & { message_status: string }>> {
    const rows = await this.db
      .selectFrom("balance_ledger as r")
      .innerJoin("messages as m", "m.id", "r.message_id")
      .selectAll("r")
      .select("m.status as message_status")
      .where("m.bot", "=", bot)
      .where("r.reason", "=", "reserve")
      .where("m.status", "not in", ["answered", "unconfirmed", "delivering", "partial", "sent"])
      .where((eb) => eb.not(eb.exists(eb.selectFrom("balance_ledger as f").select("f.id").whereRef("f.ref_id", "=", "r.id"))))
      .orderBy("r.id", "asc")
      .execute();
    return rows.map((r) => ({ ...normaliseLedger(r), message_status: r.message_status }));
  }

  /**
   * The ledger, newest first.
   * @param account one account, or every account when undefined
   * @param limit rows at most
   */
  async history(account: string | undefined, limit: number): Promise<LedgerRow[]> {
    let q = this.db.selectFrom("balance_ledger").selectAll().orderBy("id", "desc").limit(limit);
    if (account) q = q.where("account", "=", account);
    return (await q.execute()).map(normaliseLedger);
  }

  /** Sum of an account's ledger in hundredths; equals its balance when the books are sound. */
  async ledgerSum(account: string): Promise<number> {
    const row = await this.db
      .selectFrom("balance_ledger")
      .select((eb) => eb.fn.sum<number>("delta").as("total"))
      .where("account", "=", account)
      .executeTakeFirst();
    return Number(row?.total ?? 0);
  }

  /**
   * Appends a ledger row whose `balance_after` is the account's balance as it stands in `trx`
   * (after the movement's update), copied by the insert itself: one statement where the database
   * returns rows of an insert, else the insert and a read of the row.
   * @throws BalanceError `BALANCE_NO_ACCOUNT` when the account does not exist (nothing written)
   */
  private async writeLedger(trx: Transaction<Schema>, row: Omit<LedgerRow, "id" | "balance_after">): Promise<LedgerRow> {
    const insert = (p: Slot) =>
      trx
        .insertInto("balance_ledger")
        .columns(["account", "delta", "reason", "message_id", "ref_id", "note", "created_ms", "balance_after"])
        .expression((eb) =>
          eb
            .selectFrom("balance_accounts")
            .select([
              "account",
              eb.val(p<number>("delta")).as("delta"),
              eb.val(p("reason")).as("reason"),
              eb.val(p<number | null>("message_id")).as("message_id"),
              eb.val(p<number | null>("ref_id")).as("ref_id"),
              eb.val(p<string | null>("note")).as("note"),
              eb.val(p<number>("created_ms")).as("created_ms"),
              "balance",
            ])
            .where("account", "=", p("account")),
        );
    const args = { ...row };
    let written: { id: number; balance_after: number } | undefined;
    if (await this.takesReturning(trx)) {
      // Run as compiled: Kysely's MySQL adapter says the dialect has no RETURNING and would
      // hand back the insert's counts instead of the rows MariaDB returns.
      written = (
        await this.prepared.run<{ id: number; balance_after: number }>(trx, "ledger|returning", (p) => insert(p).returning(["id", "balance_after"]), args)
      ).rows[0];
    } else {
      const res = await this.prepared.run(trx, "ledger", insert, args);
      written =
        Number(res.numAffectedRows ?? 0) === 1
          ? await trx.selectFrom("balance_ledger").select(["id", "balance_after"]).where("id", "=", Number(res.insertId)).executeTakeFirst()
          : undefined;
    }
    if (!written) throw new BalanceError("BALANCE_NO_ACCOUNT", `account ${row.account} does not exist`);
    return { ...row, id: Number(written.id), balance_after: Number(written.balance_after) };
  }

  /** Read on the caller's transaction: a pool whose connections all wait here cannot lend another. */
  private takesReturning(trx: Transaction<Schema>): Promise<boolean> {
    if (this.dialect === "sqlite") return Promise.resolve(true);
    this.returning ??= sql<{ v: string }>`select version() as v`.execute(trx).then(
      (r) => {
        const v = String(r.rows[0]?.v ?? "");
        const [major = 0, minor = 0] = v.split(".").map((x) => Number.parseInt(x, 10));
        return /mariadb/i.test(v) && (major > 10 || (major === 10 && minor >= 5));
      },
      () => {
        this.returning = undefined;
        return false;
      },
    );
    return this.returning;
  }
}

function normaliseLedger(r: LedgerRow): LedgerRow {
  // mysql2 may hand BIGINT back as strings; keep every amount a number.
  return {
    ...r,
    id: Number(r.id),
    delta: Number(r.delta),
    balance_after: Number(r.balance_after),
    created_ms: Number(r.created_ms),
    message_id: r.message_id === null ? null : Number(r.message_id),
    ref_id: r.ref_id === null ? null : Number(r.ref_id),
  };
}

/**
 * Parses an operator-typed amount of credits into hundredths: `500`, `12.5`, `12,50`.
 * @returns hundredths of a credit
 * @throws BalanceError for anything else: signs, exponents, more than two decimals, zero, or
 * more than 1,000,000,000 credits
 */
export function parseAmount(input: string): number {
  return parseCredits(input, false);
}

/**
 * Parses a signed amount of credits for `bots balance adjust`: `-10`, `+2.5`, `12,50`.
 * @returns signed hundredths, not 0
 * @throws BalanceError `BALANCE_AMOUNT_INVALID` as {@link parseAmount}
 */
export function parseSignedAmount(input: string): number {
  return parseCredits(input, true);
}

function parseCredits(input: string, signed: boolean): number {
  const sign = signed && /^\s*-/.test(input) ? -1 : 1;
  const s = signed ? input.trim().replace(/^[-+]/, "") : input.trim();
  const m = /^(\d{1,13})(?:[.,](\d{1,2}))?$/.exec(s);
  if (!m) {
    throw new BalanceError("BALANCE_AMOUNT_INVALID", `'${input}' is not an amount of credits`, {
      hint: "write a positive number with at most two decimals, e.g. 500, 12.5 or 12,50",
    });
  }
  const value = Number(m[1]) * 100 + Number((m[2] ?? "").padEnd(2, "0") || 0);
  if (value <= 0)
    throw new BalanceError("BALANCE_AMOUNT_INVALID", `amount must be ${signed ? "other than" : "above"} zero, got '${input}'`, {
      hint: signed ? "e.g. -10 or 2.50" : "top-ups are positive amounts",
    });
  if (value > MAX_TOPUP)
    throw new BalanceError("BALANCE_AMOUNT_INVALID", `amount '${input}' is above the limit of 1,000,000,000 credits`, { hint: "split it or check for a typo" });
  return sign * value;
}

/** Formats hundredths as credits with two decimals: 50000 → "500.00". */
export function formatCredits(hundredths: number): string {
  const sign = hundredths < 0 ? "-" : "";
  const abs = Math.abs(hundredths);
  return `${sign}${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, "0")}`;
}
