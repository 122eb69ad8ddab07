import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { dialects } from "../support/db.js";
import { TwoGisSetup } from "../support/twogis.js";

const BRANCH = "70000001000000001";
const ANSWER = "**Спасибо**, Анна! Подробнее о доставке: [здесь](https://shop.example/d).\n\n- курьер\n- самовывоз";

for (const dialect of dialects()) {
  describe(`2GIS answers per reply.format (${dialect})`, () => {
    test("markdown: the official answer is clean plain text; the stored answer keeps the model's text", async () => {
      const s = await TwoGisSetup.start({ dialect });
      try {
        s.llm.respond = () => ({ text: ANSWER });
        const r = s.dgis.addReview(BRANCH, { text: "Отличный сервис", rating: 5, userName: "Анна" });
        const run = await s.cli("poll", "2gis");
        assert.equal(run.code, 0, run.stderr);
        const [a, ...more] = s.dgis.answersTo(r.id);
        assert.equal(more.length, 0);
        assert.equal(a!.body.text, "Спасибо, Анна! Подробнее о доставке: здесь (https://shop.example/d).\n\n• курьер\n• самовывоз");
        const [out] = await s.outgoing();
        assert.equal(out!.text, ANSWER);
      } finally {
        await s.stop();
      }
    });

    test("plain: the official answer is the model's text as written", async () => {
      const s = await TwoGisSetup.start({ dialect, extraYaml: "reply:\n  format: plain" });
      try {
        s.llm.respond = () => ({ text: ANSWER });
        const r = s.dgis.addReview(BRANCH, { text: "Хорошо", rating: 4, userName: "Иван" });
        const run = await s.cli("poll", "2gis");
        assert.equal(run.code, 0, run.stderr);
        assert.equal(s.dgis.answersTo(r.id)[0]!.body.text, ANSWER);
      } finally {
        await s.stop();
      }
    });
  });
}
