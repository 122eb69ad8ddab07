import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { openStore } from "../../src/storage/index.js";
import { argsHash } from "../../src/storage/tool-effects.js";
import { createTestDatabase, dialects } from "../support/db.js";

const lead = (messageId: number, phone = "+79001234567") => ({
  bot: "shop",
  thread_key: "tg:1",
  chat_id: "1",
  user_id: "1",
  user_name: "U",
  dialog: [],
  message_id: messageId,
  name: "Ivan",
  phone,
  effect: { bot: "shop", message_id: messageId, tool: "save_lead", args: { name: "Ivan", phone } },
});

test("argument hashes ignore key order and undefined keys", () => {
  assert.equal(argsHash({ a: 1, b: "x" }), argsHash({ b: "x", a: 1, c: undefined }));
  assert.notEqual(argsHash({ a: 1 }), argsHash({ a: 2 }));
});

for (const dialect of dialects()) {
  describe(`tool effects (${dialect})`, () => {
    test("a save_lead call repeated for the same message (a loop, a replay, two at once) writes the lead once", async () => {
      const db = await createTestDatabase(dialect);
      const a = await openStore(db.url);
      const b = dialect === "mysql" ? await openStore(db.url) : a;
      try {
        const first = await a.leads.upsert(lead(7));
        assert.deepEqual([first.created, first.repeated], [true, false]);
        const again = await a.leads.upsert(lead(7));
        assert.deepEqual([again.created, again.changed, again.repeated, again.lead.id], [false, false, true, first.lead.id]);
        assert.equal(again.lead.updated_ms, first.lead.updated_ms);
        // Twins of a new call at once (two processes on MySQL): one effect, one stored call.
        const twins = await Promise.all([a.leads.upsert(lead(8, "+79009999999")), b.leads.upsert(lead(8, "+79009999999"))]);
        assert.deepEqual(twins.map((t) => t.repeated).sort(), [false, true]);
        const rows = await a.database.db.selectFrom("leads").selectAll().execute();
        assert.equal(rows.length, 1);
        assert.equal(rows[0]!.phone, "+79009999999");
        const effects = await a.database.db.selectFrom("tool_effects").select(["message_id", "ref"]).orderBy("id").execute();
        assert.deepEqual(
          effects.map((e) => [Number(e.message_id), Number(e.ref)]),
          [
            [7, first.lead.id],
            [8, first.lead.id],
          ],
        );
        // A later message with the same details is a new call: it runs, and as nothing changed
        // the lead keeps its version (an e-mail in flight stays valid).
        const later = await a.leads.upsert(lead(9, "+79009999999"));
        assert.deepEqual([later.repeated, later.changed], [false, false]);
      } finally {
        await a.close();
        if (b !== a) await b.close();
        await db.drop();
      }
    });

    test("log_progress check-ins: the same call for the same message adds one check-in", async () => {
      const db = await createTestDatabase(dialect);
      const s = await openStore(db.url);
      try {
        const effect = { bot: "coach", message_id: 3, tool: "log_progress", args: { goal_id: 1, day: "2026-05-11" } };
        const c = { bot: "coach", user_id: "5", goal_id: 1, day: "2026-05-11", source: "text", pointsFor: (k: number) => (k === 1 ? 10 : 5), effect };
        const one = await s.coaching.addCheckin(c);
        const two = await s.coaching.addCheckin({ ...c, note: "again" });
        assert.deepEqual([one.repeated, two.repeated, two.id, two.points], [false, true, one.id, 10]);
        assert.equal(await s.coaching.points("coach", "5"), 10);
        // /undo, then the message replayed: still nothing added.
        await s.coaching.undoLast("coach", "5");
        const three = await s.coaching.addCheckin(c);
        assert.deepEqual([three.repeated, three.points], [true, 0]);
        assert.equal(await s.coaching.points("coach", "5"), 0);
        // Another message checks in normally.
        const four = await s.coaching.addCheckin({ ...c, effect: { ...effect, message_id: 4 } });
        assert.deepEqual([four.repeated, four.points], [false, 10]);
      } finally {
        await s.close();
        await db.drop();
      }
    });
  });
}
