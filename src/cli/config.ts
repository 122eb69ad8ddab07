import chalk from "chalk";
import { formatProblem, loadBotConfigs } from "../config/load.js";
import { ExitError } from "../errors.js";
import type { CliContext } from "./context.js";
import { table } from "./shared.js";

/**
 * `bots config check`: every problem at once as `file:line: field: message`, exit 2; otherwise
 * a table of bots (name, channel, enabled, model, account) and exit 0.
 */
export async function checkCommand(c: CliContext): Promise<void> {
  const { bots, problems, files } = loadBotConfigs(c.configDir, c.env);
  if (c.json) {
    c.out(
      JSON.stringify({
        ok: problems.length === 0,
        problems,
        bots: bots.map((b) => ({ name: b.name, channel: b.channel, enabled: b.enabled, model: b.llm.model, account: b.balance.account })),
      }),
    );
    if (problems.length) throw new ExitError(2);
    return;
  }
  if (problems.length) {
    for (const p of problems) c.err(formatProblem(p));
    c.err(chalk.red(`${problems.length} problem${problems.length === 1 ? "" : "s"} in ${new Set(problems.map((p) => p.file)).size} file(s)`));
    throw new ExitError(2);
  }
  if (!files.length) {
    c.out(`No bot configs in ${c.configDir}. Copy one from configs/examples/ to start.`);
    return;
  }
  c.out(
    table(
      ["NAME", "CHANNEL", "ENABLED", "MODEL", "ACCOUNT"],
      bots.map((b) => [b.name, b.channel, b.enabled ? "yes" : "no", b.llm.model, b.balance.account]),
    ),
  );
  c.out(chalk.green(`${bots.length} bot${bots.length === 1 ? "" : "s"} OK`));
}
