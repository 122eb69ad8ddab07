/**
 * Splits text into parts of at most `limit` UTF-16 code units (a channel's message length limit:
 * Telegram 4096, VK 4096), preferring paragraph, line, sentence and word boundaries, never
 * splitting a surrogate pair. Parts are trimmed at the cut; text within the limit is one part.
 * @returns the parts in order; empty for empty text
 */
export function splitText(text: string, limit: number): string[] {
  const parts: string[] = [];
  let rest = text;
  while (rest.length > limit) {
    const window = rest.slice(0, limit);
    let cut = Math.max(window.lastIndexOf("\n\n"), -1);
    if (cut < limit / 2) cut = window.lastIndexOf("\n");
    if (cut < limit / 2) cut = Math.max(window.lastIndexOf(". "), window.lastIndexOf("! "), window.lastIndexOf("? ")) + 1;
    if (cut < limit / 2) cut = window.lastIndexOf(" ");
    if (cut < limit / 2) {
      cut = limit;
      const code = rest.charCodeAt(cut - 1);
      if (code >= 0xd800 && code <= 0xdbff) cut--;
    }
    parts.push(rest.slice(0, cut).trimEnd());
    rest = rest.slice(cut).trimStart();
  }
  if (rest.length) parts.push(rest);
  return parts;
}
