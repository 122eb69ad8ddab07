import { accessSync, constants, statSync } from "node:fs";
import path from "node:path";
import chalk from "chalk";
import type { ToolDefinition } from "../llm/client.js";
import { ExitError, UsageError } from "../errors.js";
import { buildFeatures } from "../features/index.js";
import { createLogging } from "../logging.js";
import {
  chatSession,
  loadCases,
  promptAnswer,
  runCases,
  transcribeFile,
  type PromptTestAnswer,
  type PromptTestDeps,
  type VoiceTranscript,
} from "./prompt-test.js";
import { llmFor, secretsOf } from "../runner.js";
import { formatCredits } from "../storage/balance.js";
import type { Store } from "../storage/index.js";
import type { CliContext } from "./context.js";
import { loadBotsWarn } from "./configs.js";
import { table } from "./shared.js";

/** Options of `bots prompt test`. */
export interface PromptTestCliOptions {
  prompt?: string;
  interactive?: boolean;
  cases?: string;
  /** Local picture files sent with MESSAGE. */
  image?: string[];
  /** A local audio file: transcribed as a voice message, the transcript answered (after MESSAGE, if any). */
  voice?: string;
}

/**
 * `bots prompt test BOT [MESSAGE...]`: one answer (or a chat with `--interactive`, or a cases
 * file with `--cases`) from the bot's prompt and model. Prints the answer, prompt/completion
 * tokens, the cost a live reply would be charged and the latency; tool calls are shown, not
 * executed. Never writes to the database, never charges, never delivers.
 * @throws UsageError (exit 2) for a missing bot or message; ExitError(1) when a case fails
 */
export async function promptTestCommand(c: CliContext, botName: string, words: string[], opts: PromptTestCliOptions): Promise<void> {
  const modes = [words.length > 0 || Boolean(opts.image?.length) || Boolean(opts.voice), Boolean(opts.interactive), Boolean(opts.cases)].filter(Boolean).length;
  if (modes !== 1)
    throw new UsageError(
      "PROMPT_TEST_USAGE",
      modes === 0 ? "give a MESSAGE, --interactive or --cases FILE" : "give only one of MESSAGE, --interactive, --cases",
      { hint: `bots prompt test ${botName} "Сколько стоит доставка?"` },
    );
  // The channel is never used here: its variables (a token) need not be set.
  const all = loadBotsWarn(c, [botName], { channelVarsOptional: true });
  const bot = all.find((b) => b.name === botName);
  if (!bot) throw new UsageError("UNKNOWN_BOT", `no bot named '${botName}'`, { hint: `bots: ${all.map((b) => b.name).join(", ") || "none"}` });
  if (opts.interactive && !c.interactive)
    throw new UsageError("NOT_A_TERMINAL", "--interactive needs a terminal", { hint: "pass the message as arguments, or --cases FILE" });

  const logging = createLogging({ console: c.verbose, level: c.verbose ? "debug" : "warn", color: c.color, secrets: secretsOf([bot]) });
  const logger = logging.forBot(bot.name);
  // Feature tools are offered so tool calls can be seen; they never run. No database is opened:
  // a feature that reached for one here would fail loudly instead of writing.
  const noStore = new Proxy({} as Store, {
    get: () => {
      throw new Error("bots prompt test never uses the database");
    },
  });
  const tools = buildFeatures(bot, { store: noStore, logger, now: Date.now, env: c.env }).flatMap((f) => f.tools ?? []) as ToolDefinition<unknown>[];
  const deps: PromptTestDeps = { bot, llm: llmFor(bot, logger), tools, promptFile: opts.prompt ? path.resolve(opts.prompt) : undefined, log: logger };
  for (const file of opts.image ?? []) checkReadable(file, "IMAGE_UNREADABLE", "--image takes a local JPEG, PNG, WebP or GIF file");
  if (opts.voice) checkReadable(opts.voice, "AUDIO_UNREADABLE", "--voice takes a local audio file (.ogg, .mp3, .m4a, .wav, .mp4)");
  if (opts.voice && !bot.llm.transcription.enabled)
    c.err(chalk.yellow(`llm.transcription.enabled is false for ${bot.name}: live voice messages are not transcribed; transcribing this file anyway`));
  if (opts.image?.length && !bot.llm.vision.enabled)
    c.err(chalk.yellow(`llm.vision.enabled is false for ${bot.name}: pictures are not sent; the model reads a [photo] placeholder`));

  if (opts.cases) {
    const cases = loadCases(opts.cases);
    const results = await runCases(deps, cases, (r, done) => {
      if (c.interactive && !c.json) process.stderr.write(`\r\u001b[2K${done}/${cases.length} ${r.passed ? chalk.green("pass") : chalk.red("FAIL")} ${r.name}`);
    });
    if (c.interactive && !c.json) process.stderr.write("\r\u001b[2K");
    const failed = results.filter((r) => !r.passed);
    if (c.json) {
      c.out(
        JSON.stringify({
          bot: bot.name,
          passed: results.length - failed.length,
          failed: failed.length,
          cases: results.map((r) => ({
            name: r.name,
            passed: r.passed,
            failures: r.failures,
            answer: r.answer?.text ?? null,
            prompt_tokens: r.answer?.prompt_tokens ?? null,
            completion_tokens: r.answer?.completion_tokens ?? null,
            latency_ms: r.answer?.latency_ms ?? null,
          })),
        }),
      );
    } else {
      c.out(
        table(
          ["RESULT", "CASE", "FAILED EXPECTATION", "TOKENS", "MS"],
          results.map((r) => [
            r.passed ? chalk.green("pass") : chalk.red("FAIL"),
            r.name,
            r.failures.join("; "),
            r.answer ? `${r.answer.prompt_tokens}+${r.answer.completion_tokens}` : "-",
            r.answer ? String(r.answer.latency_ms) : "-",
          ]),
        ),
      );
      for (const r of failed.filter((x) => x.answer)) c.out(chalk.dim(`\n${r.name} answered:\n  ${r.answer!.text.replace(/\n/g, "\n  ")}`));
      c.out(failed.length ? chalk.red(`\n${failed.length} of ${results.length} cases failed`) : chalk.green(`\n${results.length} cases passed`));
    }
    await logging.flush();
    if (failed.length) throw new ExitError(1);
    return;
  }

  if (opts.interactive) {
    const { input } = await import("@inquirer/prompts");
    c.err(chalk.dim(`Chat with ${bot.name} (${bot.llm.model}). /reset forgets the dialog, /exit ends. Nothing is sent or charged.`));
    await chatSession(
      deps,
      async () => {
        try {
          return await input({ message: "you:" });
        } catch {
          return null; // Ctrl-C / Ctrl-D in the prompt ends the chat.
        }
      },
      (e) => {
        if ("reset" in e) c.err(chalk.dim("(dialog forgotten)"));
        else if ("error" in e) c.err(chalk.red(`error: ${e.error}`));
        else printAnswer(c, e.answer);
      },
    );
    await logging.flush();
    return;
  }

  let message = words.join(" ");
  let voice: VoiceTranscript | undefined;
  if (opts.voice) {
    voice = await transcribeFile(deps, opts.voice);
    if (!voice.text) {
      await logging.flush();
      throw new UsageError("VOICE_EMPTY", `${opts.voice}: the transcription found no speech`, { hint: "a live voice message like it is recorded skipped" });
    }
    message = [message.trim(), voice.text].filter(Boolean).join("\n");
  }
  const answer = await promptAnswer(deps, [], message, opts.image ?? []);
  await logging.flush();
  printAnswer(c, answer, voice);
}

/**
 * A `--image` or `--voice` file must be there and readable: the operator asked for it, so a typo
 * is a usage error (exit 2), not a file the bot would leave out.
 * @throws UsageError `code` (`IMAGE_UNREADABLE`, `AUDIO_UNREADABLE`) with `hint`
 */
function checkReadable(file: string, code: string, hint: string): void {
  try {
    accessSync(file, constants.R_OK);
    if (!statSync(file).isFile()) throw Object.assign(new Error("not a file"), { code: "EISDIR" });
  } catch (error) {
    const errno = (error as NodeJS.ErrnoException).code;
    const why = errno === "ENOENT" ? "no such file" : errno === "EACCES" ? "permission denied" : errno === "EISDIR" ? "not a file" : (error as Error).message;
    throw new UsageError(code, `cannot read ${file}: ${why}`, { hint });
  }
}

function printAnswer(c: CliContext, a: PromptTestAnswer, voice?: VoiceTranscript): void {
  if (c.json) {
    c.out(
      JSON.stringify({
        ...a,
        cost: formatCredits(a.cost),
        cost_hundredths: a.cost,
        ...(voice ? { transcript: voice.text, transcription_ms: voice.latency_ms } : {}),
      }),
    );
    return;
  }
  if (voice) c.out(chalk.dim(`voice (${voice.latency_ms} ms): ${voice.text}`));
  for (const t of a.tool_calls) c.out(chalk.dim(`tool call (not executed): ${t.name}(${t.arguments})`));
  c.out(a.text);
  for (const p of a.images.problems) c.err(chalk.yellow(`warning: ${p}`));
  if (a.images.left)
    c.out(
      chalk.yellow(
        `${a.images.left} picture(s) not sent to the model (${a.images.problems.length ? "see the warnings above" : "llm.vision.enabled is false"})`,
      ),
    );
  c.out(
    chalk.dim(
      `${a.model} · ${a.images.sent ? `${a.images.sent} picture(s) · ` : ""}${a.prompt_tokens} prompt + ${a.completion_tokens} completion tokens · ${formatCredits(a.cost)} credits · ${a.latency_ms} ms`,
    ),
  );
}
