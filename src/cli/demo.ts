import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import chalk from "chalk";
import { formatProblem, loadBotConfigs } from "../config/load.js";
import { ConfigError } from "../errors.js";
import { createLogging } from "../logging.js";
import { startBots } from "../runner.js";
import { formatCredits } from "../storage/balance.js";
import { openStore } from "../storage/index.js";
import { DemoBotApi, type SentMessage } from "../demo/botapi.js";
import { DemoModel } from "../demo/model.js";
import type { CliContext } from "./context.js";

/** Options of `bots demo`. */
export interface DemoOptions {
  /** Folder to keep the demo's configs, database and logs in (created; reused when it exists). */
  keep?: string;
}

/** The demo bot's token on the local Bot API (not a real one). */
const DEMO_TOKEN = "100000001:demo-token-not-real";
/** The demo user: a private chat whose id is the user id. */
const DEMO_USER = { id: 1001, first_name: "Demo user" };
/** Credits the demo account gets once, in hundredths. */
const DEMO_TOPUP = 100_00;
/** How long one message may take before the demo stops waiting for it. */
const ANSWER_WAIT_MS = 60_000;

/** The folder holding `configs/examples/` and `prompts/` (the checkout or the installed package). */
function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(path.join(dir, "configs/examples/shop-tg.yaml")) && existsSync(path.join(dir, "package.json"))) return dir;
    const up = path.dirname(dir);
    if (up === dir)
      throw new ConfigError("DEMO_FILES_MISSING", "configs/examples/shop-tg.yaml was not found beside the bots program", {
        hint: "reinstall the package, or run bots demo from the checkout",
      });
    dir = up;
  }
}

/**
 * `bots demo`: `configs/examples/shop-tg.yaml` with its prompt, run through the real pipeline on
 * a local Bot API ({@link DemoBotApi}), a demo model that quotes the prompt ({@link DemoModel})
 * and a SQLite database in a temporary folder topped up with 100 credits. Each line of standard
 * input is sent as a Telegram user's message and the bot's answers are printed with the charge
 * and the balance; on a terminal it prompts, otherwise it reads to the end of input. At the end
 * the folder is removed, unless `--keep DIR`. The user's `.env`, configs and database are never
 * read or written.
 * @throws ConfigError (exit 2) when the example files are missing or invalid
 */
export async function demoCommand(c: CliContext, opts: DemoOptions): Promise<void> {
  const root = packageRoot();
  const dir = opts.keep ? path.resolve(opts.keep) : mkdtempSync(path.join(os.tmpdir(), "bots-demo-"));
  const cleanup = () => {
    if (!opts.keep) rmSync(dir, { recursive: true, force: true });
  };
  const api = new DemoBotApi(DEMO_TOKEN);
  const model = new DemoModel();
  let stopBots: (() => Promise<unknown>) | undefined;
  let closeStore: (() => Promise<void>) | undefined;
  let flush: (() => Promise<void>) | undefined;
  try {
    // Copied only when missing: with --keep DIR an edited prompt survives the next run.
    for (const rel of ["configs/shop-tg.yaml", "prompts/shop.md"]) {
      const to = path.join(dir, rel);
      mkdirSync(path.dirname(to), { recursive: true });
      if (!existsSync(to)) copyFileSync(path.join(root, rel === "configs/shop-tg.yaml" ? "configs/examples/shop-tg.yaml" : rel), to);
    }
    const [apiRoot, modelUrl] = await Promise.all([api.start(), model.start()]);
    const env = {
      TG_TOKEN: DEMO_TOKEN,
      TG_API_ROOT: apiRoot,
      OPENAI_API_KEY: "demo-key-not-secret",
      OPENAI_BASE_URL: modelUrl,
      OPENAI_MODEL: "demo-quotes-prompt",
    };
    const configDir = path.join(dir, "configs");
    const { bots, problems } = loadBotConfigs(configDir, env);
    if (problems.length)
      throw new ConfigError("CONFIG_INVALID", problems.map(formatProblem).join("\n"), {
        hint: `fix the demo files in ${dir}, or run bots demo without --keep`,
      });
    const bot = bots[0]!;
    const dbUrl = `sqlite:${path.join(dir, "bots.db")}`;
    const store = await openStore(dbUrl);
    closeStore = () => store.close();
    const account = bot.balance.account;
    if (!(await store.balance.history(account, 1)).length) await store.balance.topUp(account, DEMO_TOPUP, "bots demo");
    const logDir = path.join(dir, "logs");
    const logging = createLogging({ logDir, console: c.verbose, level: c.verbose ? "debug" : "info", color: c.color });
    flush = () => logging.flush();
    const running = await startBots({ bots: [bot], store, logging, env, host: c.env.BOTS_HOST || undefined });
    stopBots = () => running.stop(5000);
    const pipeline = running.bots[0]?.pipeline;
    if (!pipeline) throw new Error(`the demo bot did not start (see the log in ${logDir})`);

    const q = (s: string) => (/^[\w/.:@-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`);
    const g = `--db ${q(dbUrl)} --config-dir ${q(configDir)}`;
    const balanceNow = async () => (await store.balance.get(account))?.balance ?? 0;
    c.err(
      chalk.bold(
        `bots demo: ${bot.name} (configs/examples/shop-tg.yaml) on a local Bot API, with a demo model that quotes ${bot.prompt}: no token, no key, no AI.`,
      ),
    );
    c.err(
      `Database and logs in ${dir}${opts.keep ? "" : " (removed at the end; --keep DIR keeps them)"}. Balance ${formatCredits(await balanceNow())} credits, ${formatCredits(Math.round(bot.balance.cost_per_reply * 100))} an answer.`,
    );
    c.err(
      chalk.dim(
        `In another terminal:\n  bots ${g} balance\n  bots ${g} dialogs ${bot.name} tg:${DEMO_USER.id}\n  bots --log-dir ${q(logDir)} logs tail ${bot.name} -f`,
      ),
    );
    c.err(
      c.interactive
        ? "Type a message and press Enter (/start and /help work as in Telegram); Ctrl-D or Ctrl-C ends."
        : "Reading one message per line from standard input.",
    );

    const sent: SentMessage[] = [];
    api.on("sent", (m: SentMessage) => sent.push(m));
    const rl = readline.createInterface({ input: process.stdin, output: c.interactive ? process.stdout : undefined, terminal: c.interactive });
    const onSigint = () => rl.close();
    process.once("SIGINT", onSigint);
    rl.on("SIGINT", onSigint);
    const you = chalk.cyan("you> ");
    if (c.interactive) {
      rl.setPrompt(you);
      rl.prompt();
    }
    try {
      for await (const line of rl) {
        const text = line.trim();
        if (text) {
          const before = await balanceNow();
          const from = sent.length;
          const updateId = api.userSays(DEMO_USER, text);
          if (!c.interactive) c.out(`you> ${text}`);
          const handled = await waitFor(async () => {
            // Acknowledged: recorded (or the command answered); then the queue has answered it.
            await new Promise<void>((resolve) =>
              api.acked >= updateId
                ? resolve()
                : api.on("acked", function on(n: number) {
                    if (n >= updateId) {
                      api.off("acked", on);
                      resolve();
                    }
                  }),
            );
            await pipeline.onIdle();
          }, ANSWER_WAIT_MS);
          for (const m of sent.slice(from)) c.out(`${chalk.green(`${bot.name}>`)} ${m.text}`);
          const after = await balanceNow();
          const cost = Math.round(bot.balance.cost_per_reply * 100);
          const unanswered = after < cost ? `no answer: the balance cannot pay; top up with bots ${g} balance add 100` : "no answer: see the log";
          const note = !handled
            ? `no answer within ${ANSWER_WAIT_MS / 1000} s; see the log`
            : sent.length === from
              ? unanswered
              : before === after
                ? "a command: free"
                : `charged ${formatCredits(before - after)}`;
          c.out(chalk.dim(`  (${note} · balance ${formatCredits(after)})`));
        }
        if (c.interactive) rl.prompt();
      }
    } finally {
      process.off("SIGINT", onSigint);
      rl.close();
    }
    if (c.interactive) c.err("");
    if (opts.keep) c.err(`Kept ${dir}: bots ${g} dialogs ${bot.name}`);
  } finally {
    await stopBots?.().catch(() => undefined);
    await closeStore?.().catch(() => undefined);
    await flush?.().catch(() => undefined);
    await Promise.all([api.stop(), model.stop()]);
    cleanup();
  }
}

/** Runs `fn`; false when it has not finished within `ms`. */
async function waitFor(fn: () => Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([fn().then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
