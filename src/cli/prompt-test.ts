import { readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { pino, type Logger } from "pino";
import { isMap, isSeq, LineCounter, parseDocument, type Node } from "yaml";
import * as z from "zod";
import type { BotConfig } from "../config/schema.js";
import { completeWithImages, loadImages, sniffImageMime, tooLarge, type ImageFetcher } from "../core/images.js";
import { ChannelError, ConfigError, describeError } from "../errors.js";
import type { ChatMessage, LlmClient, ToolCallRecord, ToolDefinition } from "../llm/client.js";
import { loadPrompt, renderPrompt, type PromptKind } from "../llm/prompt.js";
import { transcriberFor } from "../llm/transcribe.js";
import { audioExtension, audioMimeOf, audioTooLarge, MAX_AUDIO_BYTES } from "../core/voice.js";

/** One turn of a test dialog. */
export interface Turn {
  role: "user" | "assistant";
  text: string;
}

/** What `bots prompt test` needs: no database, no channel. */
export interface PromptTestDeps {
  bot: BotConfig;
  llm: LlmClient;
  /** Tools the bot's features offer; shown when the model calls them, never executed. */
  tools?: ToolDefinition<unknown>[];
  /** Another prompt file (absolute, or relative to the bot's project root). */
  promptFile?: string;
  /** Kind of message the prompt is chosen for. @defaultValue "messages" */
  kind?: PromptKind;
  /** Clock for `{{now}}`, epoch ms UTC. @defaultValue Date.now */
  now?: () => number;
  /** Logger for picture problems and a model's refusal of images. @defaultValue silent */
  log?: Logger;
}

/** One answer with what it cost. */
export interface PromptTestAnswer {
  text: string;
  model: string;
  prompt_tokens: number;
  completion_tokens: number;
  /** The bot's `balance.cost_per_reply`, hundredths of a credit (what a live reply is charged). */
  cost: number;
  latency_ms: number;
  /** Tool calls the model made; `result` is null (not executed). */
  tool_calls: ToolCallRecord[];
  /** Pictures sent to the model, pictures given but left out (vision off, too large...) and why. */
  images: { sent: number; left: number; problems: string[] };
}

/**
 * Asks the bot's model for one answer to `message` after `history`, with the bot's system prompt
 * (or `promptFile`) rendered now. Tool calls are recorded, not executed. Writes nothing,
 * delivers nothing, charges nothing.
 * @throws ConfigError when the prompt file cannot be read; LlmError when the model fails
 */
export async function promptAnswer(deps: PromptTestDeps, history: Turn[], message: string, imageFiles: string[] = []): Promise<PromptTestAnswer> {
  const bot = deps.bot;
  const system = renderPrompt(loadPrompt(bot, deps.kind ?? "messages", deps.promptFile), {
    botName: bot.name,
    timezone: bot.timezone,
    nowMs: (deps.now ?? Date.now)(),
  });
  const messages: ChatMessage[] = [
    { role: "system", content: system },
    ...history.map((t): ChatMessage => ({ role: t.role, content: t.text })),
    { role: "user", content: message },
  ];
  const log = deps.log ?? pino({ enabled: false });
  const images = await loadImages(
    bot,
    imageFiles.map((f) => ({ url: pathToFileURL(path.resolve(f)).href })),
    localFiles,
    log,
  );
  const c = await completeWithImages(deps.llm, bot, messages, images, { tools: deps.tools ?? [], executeTools: false }, log);
  return {
    text: c.text,
    model: c.model,
    prompt_tokens: c.usage.prompt_tokens,
    completion_tokens: c.usage.completion_tokens,
    cost: Math.round(bot.balance.cost_per_reply * 100),
    latency_ms: c.latencyMs,
    tool_calls: c.toolCalls,
    images: { sent: images.parts.length, left: images.left, problems: images.problems ?? [] },
  };
}

/** A local voice file turned into text by {@link transcribeFile}. */
export interface VoiceTranscript {
  text: string;
  /** Wall time of the transcription including retries, ms. */
  latency_ms: number;
}

/**
 * Transcribes a local audio file (`bots prompt test --voice`) exactly as a live voice message is:
 * uploaded as bytes to the bot's `/v1/audio/transcriptions` with `llm.transcription.model` and
 * `language`, at most 25 MB; the format is told by the file's extension (`.ogg`, `.mp3`, `.m4a`,
 * `.wav`, `.mp4`...). Works while `llm.transcription.enabled` is false, to try it before turning
 * it on.
 * @throws ConfigError `AUDIO_UNREADABLE`; ChannelError `AUDIO_TOO_LARGE`; LlmError as the
 *   transcription API fails
 */
export async function transcribeFile(deps: Pick<PromptTestDeps, "bot" | "llm">, file: string): Promise<VoiceTranscript> {
  let bytes: Buffer;
  try {
    const size = statSync(file).size;
    if (size > MAX_AUDIO_BYTES) throw audioTooLarge(file, size, MAX_AUDIO_BYTES);
    bytes = readFileSync(file);
  } catch (cause) {
    if (cause instanceof ChannelError) throw cause;
    throw new ConfigError("AUDIO_UNREADABLE", `voice file ${file} cannot be read`, { cause });
  }
  const mime = audioMimeOf(file);
  const t = await transcriberFor(deps.bot, deps.llm.options).transcribe({ bytes, mime, filename: `voice.${audioExtension(mime)}` });
  return { text: t.text, latency_ms: t.latencyMs };
}

/**
 * Reads pictures from local files (`file:` URLs) for `bots prompt test --image`, with the same
 * size limit and type check as pictures from a channel.
 */
const localFiles: ImageFetcher = {
  async fetch(ref, maxBytes) {
    const file = fileURLToPath(ref.url!);
    let size: number;
    try {
      size = statSync(file).size;
    } catch (cause) {
      throw new ConfigError("IMAGE_UNREADABLE", `picture ${file} cannot be read`, { cause });
    }
    if (size > maxBytes) throw tooLarge(file, size, maxBytes);
    const bytes = readFileSync(file);
    const mime = sniffImageMime(bytes);
    if (!mime) throw new ChannelError("IMAGE_NOT_IMAGE", `${file}: not a JPEG, PNG, WebP or GIF picture`);
    return { bytes, mime };
  },
};

/**
 * A terminal chat with the bot (`--interactive`): each line the reader returns is answered with
 * the dialog so far as history. `/reset` forgets the dialog, `/exit` (or the reader returning
 * null, e.g. Ctrl-D) ends it. A failed answer is reported and the chat goes on.
 * @param read the next line typed, or null at the end of input
 * @param show receives each answer, or the error of a failed one
 * @returns how many answers were given
 */
export async function chatSession(
  deps: PromptTestDeps,
  read: () => Promise<string | null>,
  show: (event: { answer: PromptTestAnswer } | { error: string } | { reset: true }) => void,
): Promise<number> {
  let history: Turn[] = [];
  let answers = 0;
  for (;;) {
    const line = await read();
    if (line === null || line.trim() === "/exit") return answers;
    const text = line.trim();
    if (!text) continue;
    if (text === "/reset") {
      history = [];
      show({ reset: true });
      continue;
    }
    try {
      const answer = await promptAnswer(deps, history, text);
      history.push({ role: "user", text }, { role: "assistant", text: answer.text });
      answers++;
      show({ answer });
    } catch (error) {
      show({ error: describeError(error) });
    }
  }
}

const listOrOne = z.union([z.string(), z.array(z.string())]).transform((v) => (Array.isArray(v) ? v : [v]));
const turnSchema = z.union([
  z.strictObject({ user: z.string() }).transform((t): Turn => ({ role: "user", text: t.user })),
  z.strictObject({ assistant: z.string() }).transform((t): Turn => ({ role: "assistant", text: t.assistant })),
  z.strictObject({ role: z.enum(["user", "assistant"]), text: z.string() }),
]);
const caseSchema = z
  .strictObject({
    name: z.string().optional(),
    message: z.string().optional(),
    history: z.array(turnSchema).max(50).optional(),
    contains: listOrOne.optional(),
    not_contains: listOrOne.optional(),
    matches: listOrOne.optional(),
    max_chars: z.number().int().positive().optional(),
    /** Pictures sent with the message: paths relative to the cases file. */
    image: listOrOne.optional(),
  })
  .superRefine((c, ctx) => {
    const lastUser = c.history?.length && c.history[c.history.length - 1]!.role === "user";
    if (!c.message && !lastUser && !c.image) ctx.addIssue({ code: "custom", path: ["message"], message: "give message, or a history ending with a user turn" });
    if (!c.contains && !c.not_contains && !c.matches && !c.max_chars)
      ctx.addIssue({ code: "custom", path: [], message: "no expectation: add contains, not_contains, matches or max_chars" });
    for (const [i, m] of (c.matches ?? []).entries()) {
      try {
        toRegExp(m);
      } catch (e) {
        ctx.addIssue({ code: "custom", path: ["matches", i], message: `not a valid regular expression: ${(e as Error).message}` });
      }
    }
  });

/** One test case of a cases file, parsed. */
export interface PromptCase {
  name: string;
  /** Dialog before the tested message, oldest first. */
  history: Turn[];
  message: string;
  /** Substrings the answer must contain (case-insensitive). */
  contains: string[];
  /** Substrings the answer must not contain (case-insensitive). */
  not_contains: string[];
  /** Regular expressions the answer must match: `pattern` or `/pattern/flags`. */
  matches: string[];
  max_chars?: number;
  /** Absolute paths of pictures sent with the message. */
  images: string[];
}

/**
 * Reads a cases file: a YAML list (or `{cases: [...]}`) of cases, each with `message` (or a
 * `history` of `{user: …}` / `{assistant: …}` turns, the last user turn being the one tested),
 * and expectations `contains`, `not_contains`, `matches` (string or list) and `max_chars`;
 * `image` (a path or a list, relative to the cases file) sends pictures with the message.
 * @throws ConfigError listing every problem as `file:line: cases[i].field: message`
 */
export function loadCases(file: string): PromptCase[] {
  let source: string;
  try {
    source = readFileSync(file, "utf8");
  } catch (cause) {
    throw new ConfigError("CASES_UNREADABLE", `cases file ${file} cannot be read`, { cause, hint: "check the --cases path" });
  }
  const lc = new LineCounter();
  const doc = parseDocument(source, { lineCounter: lc, prettyErrors: false });
  if (doc.errors.length)
    throw new ConfigError("CASES_INVALID", doc.errors.map((e) => `${file}:${e.linePos?.[0]?.line ?? 0}: YAML: ${e.message.split("\n")[0]}`).join("\n"));
  let listNode = doc.contents as Node | null;
  let prefix: (string | number)[] = [];
  if (isMap(listNode) && listNode.has("cases")) {
    listNode = listNode.get("cases", true) as Node;
    prefix = ["cases"];
  }
  if (!isSeq(listNode))
    throw new ConfigError("CASES_INVALID", `${file}: expected a list of cases (or cases: [...])`, {
      hint: "- message: Сколько стоит доставка?\n    contains: доставка",
    });
  const raw = (listNode.toJSON() as unknown[]) ?? [];
  const problems: string[] = [];
  const cases: PromptCase[] = [];
  raw.forEach((item, i) => {
    const parsed = caseSchema.safeParse(item);
    if (!parsed.success) {
      for (const issue of parsed.error.issues) {
        const p = [...prefix, i, ...issue.path.map((k) => (typeof k === "symbol" ? String(k) : k))];
        // A missing field has no node: point at the nearest enclosing one (the case itself).
        let node: Node | undefined;
        for (let n = p.length; n > 0 && !node?.range; n--) node = doc.getIn(p.slice(0, n), true) as Node | undefined;
        const line = node?.range ? lc.linePos(node.range[0]).line : 0;
        problems.push(`${file}:${line}: cases[${i}]${issue.path.length ? `.${issue.path.join(".")}` : ""}: ${issue.message}`);
      }
      return;
    }
    const c = parsed.data;
    let history = c.history ?? [];
    let message = c.message;
    if (!message && history[history.length - 1]?.role === "user") {
      message = history[history.length - 1]!.text;
      history = history.slice(0, -1);
    }
    message ??= "";
    const images = (c.image ?? []).map((f) => path.resolve(path.dirname(file), f));
    for (const [k, f] of images.entries()) {
      try {
        statSync(f);
      } catch {
        const node = doc.getIn([...prefix, i, "image", ...(Array.isArray((item as { image?: unknown }).image) ? [k] : [])], true) as Node | undefined;
        problems.push(`${file}:${node?.range ? lc.linePos(node.range[0]).line : 0}: cases[${i}].image: picture ${f} not found`);
      }
    }
    cases.push({
      name: c.name ?? `case ${i + 1}`,
      history,
      message,
      contains: c.contains ?? [],
      not_contains: c.not_contains ?? [],
      matches: c.matches ?? [],
      max_chars: c.max_chars,
      images,
    });
  });
  if (problems.length)
    throw new ConfigError("CASES_INVALID", problems.join("\n"), { hint: "each case needs message (or history) and at least one expectation" });
  if (!cases.length) throw new ConfigError("CASES_EMPTY", `${file} has no cases`);
  return cases;
}

/** The verdict on one case. */
export interface CaseResult {
  name: string;
  passed: boolean;
  /** The expectations that failed, e.g. `contains "доставка"`; or the model's error. */
  failures: string[];
  answer: PromptTestAnswer | null;
}

/**
 * Checks an answer against a case's expectations.
 * @returns the failed expectations, each as written in the file (`contains "x"`, `max_chars 200 (got 231)`)
 */
export function checkExpectations(c: Pick<PromptCase, "contains" | "not_contains" | "matches" | "max_chars">, answer: string): string[] {
  const failures: string[] = [];
  const lower = answer.toLowerCase();
  for (const s of c.contains) if (!lower.includes(s.toLowerCase())) failures.push(`contains ${JSON.stringify(s)}`);
  for (const s of c.not_contains) if (lower.includes(s.toLowerCase())) failures.push(`not_contains ${JSON.stringify(s)}`);
  for (const m of c.matches) if (!toRegExp(m).test(answer)) failures.push(`matches ${m}`);
  if (c.max_chars !== undefined && [...answer].length > c.max_chars) failures.push(`max_chars ${c.max_chars} (got ${[...answer].length})`);
  return failures;
}

/**
 * Runs every case in order, one model call each.
 * @param onCase called after each case (progress)
 */
export async function runCases(deps: PromptTestDeps, cases: PromptCase[], onCase?: (r: CaseResult, done: number) => void): Promise<CaseResult[]> {
  const results: CaseResult[] = [];
  for (const c of cases) {
    let r: CaseResult;
    try {
      const answer = await promptAnswer(deps, c.history, c.message, c.images);
      const failures = checkExpectations(c, answer.text);
      r = { name: c.name, passed: failures.length === 0, failures, answer };
    } catch (error) {
      r = { name: c.name, passed: false, failures: [`model error: ${describeError(error)}`], answer: null };
    }
    results.push(r);
    onCase?.(r, results.length);
  }
  return results;
}

/** `pattern` or `/pattern/flags` → RegExp (always with the `u` flag). @throws SyntaxError */
function toRegExp(text: string): RegExp {
  const m = /^\/(.*)\/([dgimsuvy]*)$/s.exec(text);
  const flags = new Set(`${(m?.[2] ?? "").replace(/[gyv]/g, "")}u`);
  return new RegExp(m ? m[1]! : text, [...flags].join(""));
}
