/**
 * bench/markdown: the Markdown step's own time per answer, formatting on vs off, side by side.
 *
 * What a Telegram send computes before its first request, per answer: with `reply.format:
 * markdown` parsing and rendering to entities plus the split at 4096 (src/lib/markdown.ts);
 * with `plain` the split of the raw text (src/lib/text.ts). Also the plain rendering VK and
 * 2GIS use. Answers are typical model outputs (a short one, a ~1 KB one with a list, a code
 * block and a table, and a ~10 KB one), run in turn; the first rounds warm the JIT. Prints p50
 * and p99 per variant, ms. Goal: the markdown step under 1 ms per message at p50.
 *
 *   npm run bench:markdown
 *   BENCH_ROUNDS=20000 npm run bench:markdown
 */
import { markdownToEntities, markdownToPlain, splitFormatted } from "../src/lib/markdown.js";
import { splitText } from "../src/lib/text.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5000);
const LIMIT = 4096;

const short = "Здравствуйте! Доставка **бесплатно** от 1000 ₽. Подробнее: [условия](https://shop.example/d) 🙂";
const medium = [
  "### Как оформить заказ",
  "",
  "1. Выберите товар в каталоге и нажмите **«В корзину»**.",
  "2. Укажите адрес — курьер приедет *в течение дня*.",
  "3. Оплатите картой или при получении.",
  "",
  "> Скидка 10% на первый заказ по промокоду `START`.",
  "",
  "| Способ | Срок | Цена |",
  "|---|---|---:|",
  "| Курьер | 1 день | 300 ₽ |",
  "| Самовывоз | сегодня | 0 ₽ |",
  "",
  "```json",
  '{ "promo": "START", "discount": 10 }',
  "```",
  "",
  "Остались вопросы? Пишите, ~~не стесняйтесь~~ всегда рады помочь.",
].join("\n");
const long = Array.from({ length: 12 }, () => medium).join("\n\n");
const answers = [short, medium, long];

function measure(name: string, fn: (text: string) => unknown): void {
  const times: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const text = answers[i % answers.length]!;
    const t = performance.now();
    fn(text);
    times.push(performance.now() - t);
  }
  const warm = times.slice(Math.floor(ROUNDS / 5)).sort((a, b) => a - b);
  const at = (q: number) => warm[Math.min(warm.length - 1, Math.floor(q * warm.length))]!.toFixed(4);
  console.log(`${name.padEnd(34)} p50 ${at(0.5)} ms   p99 ${at(0.99)} ms`);
}

console.log(`${ROUNDS} answers (${answers.map((a) => a.length).join(", ")} UTF-16 units in turn)`);
measure("plain (split only)", (t) => splitText(t, LIMIT));
measure("markdown → entities + split", (t) => splitFormatted(markdownToEntities(t), LIMIT));
measure("markdown → plain text (VK, 2GIS)", (t) => splitText(markdownToPlain(t), LIMIT));
