import type { Kysely, Migration } from "kysely";
import type { DialectHelpers } from "../migrations.js";
import { createAnswerProcedures, isRoutinePrivilegeError } from "./0014_procedures.js";

/**
 * MySQL/MariaDB: replaces the procedure `bots_settle` of migration 0014 with the version that
 * stores an answer once when a settle runs again after its commit's reply was lost, and records
 * a confirmed send on a row that a take-over made `unconfirmed` (src/storage/messages.ts
 * `MessagesRepo.settle`). Same name and parameters: an instance of the previous version calling
 * it meanwhile gets the new behaviour, or, between the drop and the create, falls back to its
 * transaction. A user without the privilege keeps what it has: no procedure (the transactions),
 * or the first version. SQLite: nothing.
 */
export function settleAgainMigration({ dialect }: DialectHelpers): Migration {
  return {
    async up(db: Kysely<any>) {
      if (dialect !== "mysql") return;
      try {
        await createAnswerProcedures(db, ["bots_settle"]);
      } catch (error) {
        if (!isRoutinePrivilegeError(error)) throw error;
      }
    },
  };
}
