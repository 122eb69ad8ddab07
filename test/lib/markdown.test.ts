import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  type FormattedText,
  isPlainMarkdown,
  markdownToEntities,
  markdownToPlain,
  renderMarkdown,
  splitFormatted,
  type TextEntity,
} from "../../src/lib/markdown.js";
import { seededRandom } from "../support/random.js";

/** The text an entity covers. */
function covered(f: FormattedText, e: TextEntity): string {
  return f.text.slice(e.offset, e.offset + e.length);
}

/** Entities as `type:covered text` (plus url/language), in order. */
function spans(f: FormattedText): string[] {
  return f.entities.map((e) => `${e.type}:${covered(f, e)}${e.url ? `→${e.url}` : ""}${e.language ? `[${e.language}]` : ""}`);
}

describe("markdownToEntities", () => {
  test("offsets and lengths are UTF-16 code units, with emoji and Cyrillic", () => {
    const f = markdownToEntities("😀 **жир** и [ссылка](https://e.example/путь) 👍🏽 *кур*");
    assert.equal(f.text, "😀 жир и ссылка 👍🏽 кур");
    assert.deepEqual(f.entities, [
      // 😀 is two UTF-16 units: "жир" starts at 3.
      { type: "bold", offset: 3, length: 3 },
      { type: "text_link", offset: 9, length: 6, url: "https://e.example/%D0%BF%D1%83%D1%82%D1%8C" },
      // 👍🏽 is four units (a skin tone modifier is a second surrogate pair).
      { type: "italic", offset: 21, length: 3 },
    ]);
  });

  test("every kind: strikethrough, code, pre with language, quote, headings, lists, tables", () => {
    const md = [
      "## Цены",
      "",
      "Было ~~100~~, стало `90`.",
      "",
      "> Цитата **важная**",
      "",
      "1. один",
      "2. два",
      "   - вложенный",
      "",
      "- точка",
      "",
      "```ts",
      "const x = 1;",
      "  return x;",
      "```",
      "",
      "| Товар | Цена |",
      "|---|---:|",
      "| Чай | 100 |",
      "| Кофе ☕ | 2000 |",
    ].join("\n");
    const f = markdownToEntities(md);
    assert.equal(
      f.text,
      [
        "Цены",
        "",
        "Было 100, стало 90.",
        "",
        "Цитата важная",
        "",
        "1. один",
        "2. два",
        "  • вложенный",
        "",
        "• точка",
        "",
        "const x = 1;",
        "  return x;",
        "",
        "Товар  | Цена",
        "-------|-----",
        "Чай    | 100",
        "Кофе ☕ | 2000",
      ].join("\n"),
    );
    assert.deepEqual(spans(f), [
      "bold:Цены",
      "strikethrough:100",
      "code:90",
      "blockquote:Цитата важная",
      "bold:важная",
      "pre:const x = 1;\n  return x;[ts]",
      "pre:Товар  | Цена\n-------|-----\nЧай    | 100\nКофе ☕ | 2000",
    ]);
  });

  test("no entity inside code, none nested in its own type; a link showing its address stays text", () => {
    const f = markdownToEntities("**a **b** c** `**x**` <https://e.example/> [mail](mailto:a@e.example) ![pic](https://e.example/p.png)");
    assert.equal(f.text, "a b c **x** https://e.example/ mail (a@e.example) pic");
    assert.deepEqual(spans(f), ["bold:a b c", "code:**x**", "text_link:pic→https://e.example/p.png"]);
  });

  test("raw HTML and Telegram's old Markdown characters are plain text, never markup", () => {
    const f = markdownToEntities("<b>x</b> a_b_c [x] <me@e.example> &amp;");
    assert.equal(f.text, "<b>x</b> a_b_c [x] me@e.example &");
    assert.deepEqual(f.entities, []);
  });

  test("an empty list item shows nothing and its marker does not land before later text", () => {
    // Found by the fast path's generated inputs: the first threw a TypeError.
    assert.deepEqual(markdownToEntities("> -\n\nпосле"), { text: "после", entities: [] });
    assert.deepEqual(markdownToEntities("-\n\nпосле"), { text: "после", entities: [] });
    assert.equal(markdownToPlain("1.\n2. два"), "2. два");
  });

  test("text that renders to nothing is sent as given", () => {
    assert.deepEqual(markdownToEntities("[]()"), { text: "[]()", entities: [] });
    assert.equal(markdownToPlain("  "), "  ");
  });
});

describe("markdownToPlain", () => {
  test("markers removed, links as text (url), lists as bullets, tables as rows", () => {
    const md =
      "# Заголовок\n\n**Жирный** и _курсив_, ~~нет~~, `код`, [сайт](https://e.example) и https://e.example/x.\n\n* раз\n* два\n\n| a | b |\n|---|---|\n| 1 | 2 |";
    assert.equal(
      markdownToPlain(md),
      "Заголовок\n\nЖирный и курсив, нет, код, сайт (https://e.example) и https://e.example/x.\n\n• раз\n• два\n\na | b\n1 | 2",
    );
  });
});

/** A formatted answer of about `bytes` UTF-16 units: paragraphs with bold and links, a long code block in the middle. */
function longAnswer(paragraphs: number, codeLines: number): string {
  const out: string[] = [];
  for (let i = 0; i < paragraphs; i++) {
    out.push(`Абзац ${i} 😀: **важно ${i}** и [ссылка ${i}](https://e.example/${i}) — ${"текст ".repeat(30)}`);
    if (i === Math.floor(paragraphs / 2))
      out.push(["```python", ...Array.from({ length: codeLines }, (_, n) => `print(${n})  # строка ${n}`), "```"].join("\n"));
  }
  return out.join("\n\n");
}

/** Checks the parts of a split: within the limit, non-empty, entities inside their part, and together equal to the whole. */
function checkParts(whole: FormattedText, parts: FormattedText[], limit: number): void {
  for (const p of parts) {
    assert.ok(p.text.length > 0 && p.text.length <= limit, `part of ${p.text.length} units`);
    for (const e of p.entities) assert.ok(e.offset >= 0 && e.length > 0 && e.offset + e.length <= p.text.length, `entity ${JSON.stringify(e)} inside its part`);
    const first = p.text.charCodeAt(0);
    assert.ok(!(first >= 0xdc00 && first <= 0xdfff), "no part starts with the second half of a surrogate pair");
  }
  // Removing whitespace, the parts are the whole text, and each entity type covers the same characters.
  const squeeze = (s: string) => s.replace(/\s+/g, "");
  assert.equal(squeeze(parts.map((p) => p.text).join("")), squeeze(whole.text));
  for (const type of new Set(whole.entities.map((e) => e.type))) {
    const of = (f: FormattedText) =>
      squeeze(
        f.entities
          .filter((e) => e.type === type)
          .map((e) => covered(f, e))
          .join(""),
      );
    assert.equal(parts.map(of).join(""), of(whole), `${type} covers the same text`);
  }
}

describe("splitFormatted", () => {
  test("a 10 KB answer splits at paragraphs, never inside an entity when a paragraph allows", () => {
    const whole = markdownToEntities(longAnswer(50, 0));
    assert.ok(whole.text.length > 10_000, `${whole.text.length} units`);
    const parts = splitFormatted(whole, 4096);
    assert.ok(parts.length >= 3);
    checkParts(whole, parts, 4096);
    // Each part ends where a paragraph ended: every entity is whole (as many as in the text).
    assert.equal(
      parts.reduce((n, p) => n + p.entities.length, 0),
      whole.entities.length,
    );
    for (const p of parts) assert.match(p.text, /^Абзац \d+/);
    assert.deepEqual(splitFormatted(whole, 4096), parts, "deterministic");
  });

  test("a code block longer than a part is cut at a line, closed and reopened with its language", () => {
    const whole = markdownToEntities(longAnswer(4, 400));
    const pre = whole.entities.find((e) => e.type === "pre")!;
    assert.ok(pre.length > 4096 + 2048, `code block of ${pre.length} units`);
    const parts = splitFormatted(whole, 4096);
    checkParts(whole, parts, 4096);
    const withPre = parts.filter((p) => p.entities.some((e) => e.type === "pre"));
    assert.ok(withPre.length >= 2, "the block spans parts");
    for (const p of withPre) {
      const e = p.entities.find((x) => x.type === "pre")!;
      assert.equal(e.language, "python");
      // Whole lines only: cut at a line break.
      for (const line of covered(p, e).split("\n")) assert.match(line, /^print\(\d+\) {2}# строка \d+$/);
    }
  });

  test("text without boundaries is cut at the limit, never between surrogates; an entity over the cut is closed and reopened", () => {
    const whole = markdownToEntities(`**${"😀".repeat(3000)}**`);
    assert.equal(whole.text.length, 6000);
    const parts = splitFormatted(whole, 4095);
    checkParts(whole, parts, 4095);
    assert.deepEqual(
      parts.map((p) => [p.text.length, p.entities]),
      [
        [4094, [{ type: "bold", offset: 0, length: 4094 }]],
        [1906, [{ type: "bold", offset: 0, length: 1906 }]],
      ],
    );
  });

  test("text within the limit is one part; empty text none", () => {
    const f = markdownToEntities("**a** b");
    assert.deepEqual(splitFormatted(f, 4096), [f]);
    assert.deepEqual(splitFormatted({ text: "", entities: [] }, 4096), []);
  });
});

describe("plain text fast path", () => {
  test("text the parser finds nothing to format in skips it and renders exactly as the parser would", () => {
    // Pieces that make Markdown, or look like it, at the start, inside and at the end of lines.
    const pieces = [
      "Привет",
      "ok",
      " ",
      "  ",
      "\n",
      "\n\n",
      "\n\n\n",
      "!",
      "(1)",
      "1.",
      "2)",
      "3 шт",
      "-",
      "+",
      "*",
      "_",
      "~",
      "#",
      ">",
      "=",
      "|",
      "`",
      "[",
      "]",
      "<",
      "&",
      "&amp;",
      "\\",
      "\t",
      "\r",
      "\u00a0",
      "😀",
      "e-mail",
      "http://e.example",
      ":",
      "---",
      "a_b",
      "**x**",
      "\u0000",
      "    code",
    ];
    // A fixed-seed generator: the same 20,000 strings on every run.
    const rand = seededRandom(20261205);
    let fast = 0;
    for (let i = 0; i < 20_000; i++) {
      let s = "";
      for (let k = 1 + rand(6); k > 0; k--) s += pieces[rand(pieces.length)];
      const slow = renderMarkdown(s, { entities: true, fastPath: false });
      if (isPlainMarkdown(s)) {
        fast++;
        assert.deepEqual(slow, { text: s, entities: [] }, JSON.stringify(s));
        assert.equal(renderMarkdown(s, { entities: false, fastPath: false }).text, s, JSON.stringify(s));
      }
      assert.deepEqual(markdownToEntities(s), slow, JSON.stringify(s));
    }
    // The generator reaches both sides.
    assert.ok(fast > 1000 && fast < 19_000, `${fast} of 20,000 took the fast path`);
    assert.equal(isPlainMarkdown("Да, конечно! Мы работаем с 9 до 18 (кроме воскресенья)."), true);
    assert.equal(isPlainMarkdown("Первая строка\nвторая\n\nновый абзац"), true);
    for (const md of ["**да**", "1. пункт", "- пункт", "a\n\n\nb", " отступ", "строка\n===", "a | b", "x &amp; y", "[x](http://e.example)"])
      assert.equal(isPlainMarkdown(md), false, md);
  });
});
