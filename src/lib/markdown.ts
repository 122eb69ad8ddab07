import markdownIt, { type MarkdownIt, type Token } from "markdown-it";

/**
 * One formatting span of a text, as the Bot API's `MessageEntity` (sendMessage `entities`,
 * sendDocument `caption_entities`): `offset` and `length` in UTF-16 code units of the text.
 * `url` only for `text_link`, `language` only for `pre` (when the code block names one).
 */
export interface TextEntity {
  type: "bold" | "italic" | "strikethrough" | "code" | "pre" | "text_link" | "blockquote";
  offset: number;
  length: number;
  url?: string;
  language?: string;
}

/** Text to show and its formatting (entities sorted by offset, outer before inner). */
export interface FormattedText {
  text: string;
  entities: TextEntity[];
}

let parser: MarkdownIt | undefined;

/** CommonMark plus tables and strikethrough (markdown-it's default preset); raw HTML stays text. */
function parse(markdown: string): Token[] {
  parser ??= markdownIt("default", { html: false, linkify: false, typographer: false });
  return parser.parse(markdown, {});
}

/** Link schemes a Telegram `text_link` carries; other links are written out as `text (url)`. */
const ENTITY_LINK = /^(https?|tg):/i;

/**
 * Renders Markdown (as models write it) to text and Bot API entities: bold, italic,
 * strikethrough, inline code (`code`), code blocks (`pre` with the fence's `language`), links
 * (`text_link`; a link whose text is its address stays plain text), block quotes
 * (`blockquote`), lists as `• ` / `1. ` lines (nested ones indented by two spaces), headings as
 * bold lines, tables as monospace (`pre`) with padded columns. Entities never overlap partly
 * and an entity is never nested in one of its own type. Text that renders to nothing (only
 * markup) is returned as given, without entities.
 */
export function markdownToEntities(markdown: string): FormattedText {
  return render(markdown, true);
}

/**
 * Renders Markdown to clean plain text for channels without formatting (VK, 2GIS): markers
 * removed, links as `text (url)`, lists as `• ` / `1. ` lines, tables as `a | b` rows, code as
 * its content. Text that renders to nothing is returned as given.
 */
export function markdownToPlain(markdown: string): string {
  return render(markdown, false).text;
}

/** Characters that may start or make Markdown inline syntax, a table, an entity, or need normalising. */
const INLINE_SYNTAX = /[\\`*_~[\]<>&|\u0000-\u0009\u000b-\u001f]/;
/** A line that may open a block: heading, quote, list, rule, setext underline, or an ordered list item. */
const BLOCK_START = /^(?:[#>+\-*=]|\d{1,9}[.)])/;

/**
 * True when `markdown` is text in which the parser finds nothing to format, so that rendering it
 * gives back the text itself without entities: none of `` \ ` * _ ~ [ ] < > & | `` or control
 * characters but line breaks; every line non-empty (paragraphs apart by one empty line), without
 * leading or trailing white space, and not starting like a block (`#`, `>`, `-`, `+`, `*`, `=`,
 * `1.` / `1)`). Most short answers are such text; they skip markdown-it (a fast path: the result
 * is the same as the full rendering's, test/lib/markdown.test.ts compares them).
 */
export function isPlainMarkdown(markdown: string): boolean {
  if (INLINE_SYNTAX.test(markdown) || markdown.includes("\n\n\n")) return false;
  for (const line of markdown.split("\n\n").join("\n").split("\n")) {
    if (!line || line.trim() !== line || BLOCK_START.test(line)) return false;
  }
  return true;
}

/**
 * The renderer behind {@link markdownToEntities} (`entities: true`) and {@link markdownToPlain}:
 * `fastPath: false` always runs the parser, also for text {@link isPlainMarkdown} lets past it
 * (tests compare the two).
 */
export function renderMarkdown(markdown: string, options: { entities: boolean; fastPath?: boolean }): FormattedText {
  return render(markdown, options.entities, options.fastPath ?? true);
}

function render(markdown: string, withEntities: boolean, fastPath = true): FormattedText {
  if (fastPath && isPlainMarkdown(markdown)) return { text: markdown, entities: [] };
  const w = new Writer(withEntities);
  w.blocks(parse(markdown));
  const out = w.finish();
  return out.text.trim() ? out : { text: markdown, entities: [] };
}

interface Open {
  type: TextEntity["type"];
  /** Offset of its first character; -1 until something is written inside it. */
  start: number;
  url?: string;
  language?: string;
  /** False for an entity not emitted (plain rendering, or nested in one that forbids it). */
  emit: boolean;
}

/** Builds the text and its entities from markdown-it's token stream. */
class Writer {
  private out = "";
  private readonly entities: TextEntity[] = [];
  private readonly open: Open[] = [];
  /** Line breaks owed before the next text (0: none; blocks ask for 1 or 2). */
  private gap = 0;
  /** A list item's marker, written before its first text. */
  private prefix = "";
  /** How many of `open` were open when `prefix` was set (they cover the marker). */
  private prefixDepth = 0;
  private readonly lists: Array<{ ordered: boolean; next: number }> = [];
  /** Text written inside each open link, for `text (url)`. */
  private readonly links: Array<{ href: string; text: string; entity: boolean }> = [];

  constructor(private readonly withEntities: boolean) {}

  finish(): FormattedText {
    const text = this.out.trimEnd();
    const entities = this.entities
      .map((e) => ({ ...e, length: Math.min(e.offset + e.length, text.length) - e.offset }))
      .filter((e) => e.length > 0)
      .sort((a, b) => a.offset - b.offset || b.length - a.length);
    return { text, entities };
  }

  private askGap(n: number): void {
    if (this.out.length) this.gap = Math.max(this.gap, n);
  }

  private write(s: string): void {
    if (!s) return;
    if (this.gap) {
      this.out += "\n".repeat(this.gap);
      this.gap = 0;
    }
    if (this.prefix) {
      this.startOpen(this.prefixDepth);
      this.out += this.prefix;
      this.prefix = "";
    }
    this.startOpen(this.open.length);
    this.out += s;
    for (const l of this.links) l.text += s;
  }

  private startOpen(depth: number): void {
    for (let i = 0; i < depth; i++) if (this.open[i]!.start < 0) this.open[i]!.start = this.out.length;
  }

  private push(type: TextEntity["type"], extra: { url?: string; language?: string } = {}): void {
    // Telegram refuses an entity inside `code`/`pre`, and a blockquote inside a blockquote;
    // one of the same type inside another adds nothing.
    const emit = this.withEntities && !this.open.some((o) => o.emit && (o.type === type || o.type === "code" || o.type === "pre"));
    this.open.push({ type, start: -1, emit, ...extra });
  }

  private pop(): void {
    const o = this.open.pop();
    if (!o?.emit || o.start < 0 || this.out.length <= o.start) return;
    const e: TextEntity = { type: o.type, offset: o.start, length: this.out.length - o.start };
    if (o.url !== undefined) e.url = o.url;
    if (o.language) e.language = o.language;
    this.entities.push(e);
  }

  /** Block tokens of a document (or of a container's content). */
  blocks(tokens: Token[]): void {
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i]!;
      const inList = this.lists.length > 0;
      switch (t.type) {
        case "paragraph_open":
          this.askGap(inList ? 1 : 2);
          break;
        case "heading_open":
          this.askGap(2);
          this.push("bold");
          break;
        case "heading_close":
          this.pop();
          break;
        case "blockquote_open":
          this.askGap(2);
          this.push("blockquote");
          break;
        case "blockquote_close":
          this.pop();
          break;
        case "bullet_list_open":
        case "ordered_list_open":
          this.askGap(inList ? 1 : 2);
          this.lists.push({ ordered: t.type === "ordered_list_open", next: Number(t.attrGet("start") ?? 1) });
          break;
        case "bullet_list_close":
        case "ordered_list_close":
          this.lists.pop();
          break;
        case "list_item_open": {
          this.askGap(1);
          const list = this.lists.at(-1)!;
          this.prefix = "  ".repeat(this.lists.length - 1) + (list.ordered ? `${list.next++}. ` : "• ");
          this.prefixDepth = this.open.length;
          break;
        }
        case "list_item_close":
          // An item with no text shows nothing; its marker must not land before later text.
          this.prefix = "";
          break;
        case "fence":
        case "code_block": {
          this.askGap(inList ? 1 : 2);
          const language = t.type === "fence" ? t.info.trim().split(/\s+/)[0] : undefined;
          this.push("pre", language ? { language } : {});
          this.write(t.content.replace(/\n+$/, ""));
          this.pop();
          break;
        }
        case "hr":
          this.askGap(2);
          this.write("———");
          break;
        case "table_open": {
          let end = i;
          while (end < tokens.length && tokens[end]!.type !== "table_close") end++;
          this.table(tokens.slice(i, end));
          i = end;
          break;
        }
        case "inline":
          this.inline(t.children ?? []);
          break;
        case "html_block":
          this.askGap(2);
          this.write(t.content.replace(/\n+$/, ""));
          break;
        default:
          break;
      }
    }
  }

  /** Inline tokens of a paragraph, heading or table cell. */
  private inline(tokens: Token[]): void {
    for (const t of tokens) {
      switch (t.type) {
        case "text":
        case "html_inline":
          this.write(t.content);
          break;
        case "softbreak":
        case "hardbreak":
          this.write("\n");
          break;
        case "code_inline":
          this.push("code");
          this.write(t.content);
          this.pop();
          break;
        case "strong_open":
          this.push("bold");
          break;
        case "em_open":
          this.push("italic");
          break;
        case "s_open":
          this.push("strikethrough");
          break;
        case "strong_close":
        case "em_close":
        case "s_close":
          this.pop();
          break;
        case "link_open":
          this.linkOpen(String(t.attrGet("href") ?? ""));
          break;
        case "link_close":
          this.linkClose();
          break;
        case "image":
          this.linkOpen(String(t.attrGet("src") ?? ""));
          this.inline(t.children ?? []);
          this.linkClose();
          break;
        default:
          break;
      }
    }
  }

  private linkOpen(href: string): void {
    const entity = this.withEntities && ENTITY_LINK.test(href);
    this.links.push({ href, text: "", entity });
    if (entity) this.push("text_link", { url: href });
  }

  private linkClose(): void {
    const link = this.links.pop();
    if (!link) return;
    const { href, text } = link;
    const same = text === href || `mailto:${text}` === href || !href;
    if (link.entity) {
      // A link that shows its own address needs no entity (Telegram links it anyway).
      if (same) this.open.at(-1)!.emit = false;
      this.pop();
      if (!text) this.write(href);
    } else if (!text) this.write(href.replace(/^mailto:/i, ""));
    else if (!same) this.write(` (${href.replace(/^mailto:/i, "")})`);
  }

  /** A table (tokens from `table_open` up to its close): rows of cells as plain text. */
  private table(tokens: Token[]): void {
    const rows: string[][] = [];
    for (const t of tokens) {
      if (t.type === "tr_open") rows.push([]);
      else if (t.type === "inline") {
        const cell = new Writer(false);
        cell.inline(t.children ?? []);
        rows.at(-1)?.push(cell.finish().text.replace(/\n/g, " "));
      }
    }
    if (!rows.length) return;
    this.askGap(this.lists.length ? 1 : 2);
    if (!this.withEntities) {
      this.write(rows.map((r) => r.join(" | ")).join("\n"));
      return;
    }
    const columns = Math.max(...rows.map((r) => r.length));
    const widths = Array.from({ length: columns }, (_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)));
    const line = (r: string[]) =>
      widths
        .map((w, c) => (r[c] ?? "").padEnd(w))
        .join(" | ")
        .trimEnd();
    const lines = [line(rows[0]!), widths.map((w) => "-".repeat(w)).join("-|-"), ...rows.slice(1).map(line)];
    this.push("pre");
    this.write(lines.join("\n"));
    this.pop();
  }
}

/**
 * Splits formatted text into parts of at most `limit` UTF-16 code units (Telegram: 4096 per
 * message, 1024 per caption). A cut goes, by preference, at a blank line outside any entity,
 * a line break outside any entity, a line break inside one, a space outside any entity, a space
 * inside one, and only then anywhere (never between the two halves of a surrogate pair); each
 * part keeps at least half the limit when a boundary allows it. An entity that spans a cut is
 * closed at the end of its part and reopened at the start of the next. The line breaks or
 * spaces at a cut are dropped. Deterministic: the same text and limit give the same parts.
 * @returns the parts in order; one part for text within the limit, none for empty text
 */
export function splitFormatted(f: FormattedText, limit: number): FormattedText[] {
  const { text, entities } = f;
  const parts: FormattedText[] = [];
  let start = 0;
  while (text.length - start > limit) {
    const max = start + limit;
    const min = start + Math.floor(limit / 2);
    const inside = (p: number) => entities.some((e) => e.offset < p && e.offset + e.length > p);
    const outside = (p: number) => !inside(p);
    const cut =
      lastAt(text, "\n\n", min, max, outside) ??
      lastAt(text, "\n", min, max, outside) ??
      lastAt(text, "\n", min, max) ??
      lastAt(text, " ", min, max, outside) ??
      lastAt(text, " ", min, max) ??
      hardCut(text, max);
    let end = cut;
    while (end > start && /\s/.test(text[end - 1]!)) end--;
    let next = cut;
    const sep = text[cut];
    if (sep === "\n" || sep === " ") while (text[next] === sep) next++;
    if (end > start) parts.push(slice(f, start, end));
    start = next;
  }
  if (start < text.length) parts.push(slice(f, start, text.length));
  return parts;
}

/** The last position p in [min, max] where `sep` starts and `ok(p)` holds, if any. */
function lastAt(text: string, sep: string, min: number, max: number, ok?: (p: number) => boolean): number | undefined {
  let p = text.lastIndexOf(sep, max);
  while (p >= min && p > 0) {
    if (!ok || ok(p)) return p;
    p = text.lastIndexOf(sep, p - 1);
  }
  return undefined;
}

/** `max`, or one less when it would fall between a surrogate pair. */
function hardCut(text: string, max: number): number {
  const code = text.charCodeAt(max - 1);
  return code >= 0xd800 && code <= 0xdbff ? max - 1 : max;
}

/** Characters [start, end) of `f` with the entities clipped to them, offsets from `start`. */
function slice(f: FormattedText, start: number, end: number): FormattedText {
  const entities: TextEntity[] = [];
  for (const e of f.entities) {
    const s = Math.max(e.offset, start);
    const t = Math.min(e.offset + e.length, end);
    if (t > s) entities.push({ ...e, offset: s - start, length: t - s });
  }
  return { text: f.text.slice(start, end), entities };
}
