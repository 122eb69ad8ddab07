import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { renderReport } from "../../src/features/report.js";
import { openStore } from "../../src/storage/index.js";
import { createTestDatabase, dialects } from "../support/db.js";

for (const dialect of dialects()) {
  describe(`the dialog report shows customers' text as written (${dialect})`, () => {
    test("every kind of line break is a <br>, bidi controls are dropped, a name with a break stays one line", async () => {
      const db = await createTestDatabase(dialect);
      const store = await openStore(db.url);
      try {
        const now = Date.now();
        await store.messages.insertIncoming({
          bot: "shop",
          channel: "tg",
          thread_key: "tg:7",
          chat_id: "7",
          user_id: "7",
          // A name that would start a new line and reverse what follows it.
          user_name: "Анна\r\nBcc: x\u202E@evil",
          text: "строка 1\r\nстрока 2\u2028строка 3\rстрока 4\u000bконец \u202Egnp.exe\u2066!",
          dedupe_key: "7:1",
          channel_message_id: "1",
          meta: null,
          status: "received",
          created_ms: now - 1000,
        });
        let html = "";
        for await (const chunk of renderReport(store, { name: "shop", timezone: "Europe/Moscow" }, { sinceMs: now - 60_000, untilMs: now + 1 })) html += chunk;
        assert.ok(html.includes("строка 1<br>строка 2<br>строка 3<br>строка 4<br>конец gnp.exe!"), html);
        assert.match(html, /<h3>Анна Bcc: x@evil <small>/);
        assert.doesNotMatch(html, /[\u202a-\u202e\u2066-\u2069\u2028\u000b\r]/u, "no bidi control or raw break is left");
      } finally {
        await store.close();
        await db.drop();
      }
    });
  });
}
