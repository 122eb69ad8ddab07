import chalk from "chalk";
import { createLogging } from "../logging.js";
import { secretsOf, selectBots, startBots } from "../runner.js";
import { collectScale } from "../core/ownership.js";
import { openStore, type Store } from "../storage/index.js";
import { ConfigError, UsageError } from "../errors.js";
import { formatProblem } from "../config/load.js";
import type { CliContext } from "./context.js";
import { checkIngress, parseHttpOptions, startOpsServer, type OpsServer, type StartCommandOptions } from "../ops/serve.js";
import { loadBots, loadBotsNamed, warnBroken } from "./configs.js";
import { requireConfigDir } from "./shared.js";
import { QuitSwitch } from "./quit.js";
import type { BotConfig } from "../config/schema.js";
import type { BrokenFile } from "../config/load.js";

/**
 * `bots start [TARGET...]`: runs the selected bots until SIGINT or SIGTERM, then stops
 * receiving, lets answers in flight finish (at most `--drain-timeout` seconds), flushes logs and
 * returns (exit 0). A second signal exits at once.
 * @throws ConfigError (exit 2) for bad configs, UsageError (exit 2) for unknown targets,
 * StorageError or ChannelError (exit 1) when the database or a channel refuses to start
 */
export async function startCommand(
  c: CliContext,
  targets: string[],
  opts: StartCommandOptions & { instanceId?: string; leaseTtl?: string; strict?: boolean },
): Promise<void> {
  const drainS = Number(opts.drainTimeout);
  if (!Number.isFinite(drainS) || drainS < 0) throw new UsageError("DRAIN_INVALID", `--drain-timeout must be seconds ≥ 0, got '${opts.drainTimeout}'`);
  const http = parseHttpOptions(opts, c.env);
  const leaseTtlS = Number(opts.leaseTtl ?? "15");
  if (!Number.isFinite(leaseTtlS) || leaseTtlS < 1 || leaseTtlS > 3600)
    throw new UsageError("LEASE_TTL_INVALID", `--lease-ttl must be seconds from 1 to 3600, got '${opts.leaseTtl}'`);
  if (opts.instanceId !== undefined && !/^[A-Za-z0-9._:-]{1,191}$/.test(opts.instanceId))
    throw new UsageError("INSTANCE_ID_INVALID", `--instance-id must be 1-191 letters, digits, '.', '_', ':' or '-', got '${opts.instanceId}'`);
  requireConfigDir(c);
  const { bots, skipped } = chooseBots(c, targets, opts.strict === true);
  checkIngress(bots, http);
  const logging = createLogging({ logDir: c.logDir, level: c.verbose ? "debug" : "info", color: c.color, secrets: [...secretsOf(bots), http?.token ?? ""] });
  const store = await openStore(c.dbUrl);
  let running: Awaited<ReturnType<typeof startBots>> | undefined;
  let ops: OpsServer | undefined;
  try {
    // The HTTP server comes first so /readyz answers 503 while bots connect.
    if (http) ops = await startOpsServer({ ...http, bots, store, logging, running: () => running });
    running = await startBots({
      bots,
      store,
      logging,
      env: c.env,
      ...ops?.hooks,
      instanceId: opts.instanceId,
      leaseTtlMs: leaseTtlS * 1000,
      http: ops?.server,
      host: c.env.BOTS_HOST || undefined,
    });
    const r = running;
    ops?.metrics.attach(() => r.bots.map((b) => ({ name: b.config.name, backlog: () => b.pipeline.backlog, inFlight: () => b.pipeline.answersInFlight })));
  } catch (error) {
    await ops?.close();
    await store.close();
    await logging.flush();
    throw error;
  }
  logging.root.info(
    { bots: bots.map((b) => b.name), owned: running.bots.map((b) => b.config.name), database: store.database.safeUrl, http_port: ops?.server.port ?? null },
    "bots started",
  );
  if (ops && !c.json) c.err(`HTTP on ${http!.host}:${ops.server.port}: /metrics /healthz /readyz`);
  const owned = new Set(running.bots.map((b) => b.config.name));
  const standby = await standbyLines(
    store,
    bots.filter((b) => !owned.has(b.name)).map((b) => b.name),
  );
  if (!c.json) {
    if (owned.size)
      c.err(
        chalk.green(
          `Running ${bots
            .filter((b) => owned.has(b.name))
            .map((b) => `${b.name} (${b.channel})`)
            .join(", ")}. Press Ctrl-C to stop.`,
        ),
      );
    for (const s of standby) c.err(chalk.yellow(s.line));
    if (!owned.size) c.err(chalk.dim("Press Ctrl-C to stop."));
  } else {
    c.out(
      JSON.stringify({
        started: bots.filter((b) => owned.has(b.name)).map((b) => ({ name: b.name, channel: b.channel })),
        standby: standby.map(({ line: _, ...s }) => s),
        not_started: skipped.map((b) => ({ name: b.name, file: b.file, problems: b.problems.map(formatProblem) })),
        http_port: ops?.server.port ?? null,
      }),
    );
  }

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once("SIGINT", () => resolve("SIGINT"));
    process.once("SIGTERM", () => resolve("SIGTERM"));
  });
  const quitSwitch = new QuitSwitch();
  const force = () => {
    logging.root.error("second signal: exiting without waiting");
    logging.flushSync();
    quitSwitch.quit(1);
  };
  process.once("SIGINT", force);
  process.once("SIGTERM", force);
  logging.root.info({ signal }, "stopping: no new messages, finishing answers in flight");
  const unfinished = await quitSwitch.race(running.stop(drainS * 1000));
  await ops?.close();
  await store.close();
  logging.root.info({ unfinished }, "stopped");
  await logging.flush();
}

/**
 * The bots `bots start TARGET...` runs. A bot named in TARGET must be valid. Without a target, or
 * with a channel, every valid bot selected runs and broken files are listed on stderr as not
 * started (exit 2 only when none is left); `strict` refuses to start on any problem.
 * @throws ConfigError (exit 2) listing problems; UsageError (exit 2) for unknown targets
 */
function chooseBots(c: CliContext, targets: string[], strict: boolean): { bots: BotConfig[]; skipped: BrokenFile[] } {
  if (strict) return { bots: selectBots(loadBots(c), targets), skipped: [] };
  const names = targets.filter((t) => !["tg", "vk", "2gis"].includes(t));
  const { bots: valid, broken } = loadBotsNamed(c, names);
  if (names.length === targets.length && targets.length) {
    warnBroken(c, broken);
    return { bots: selectBots(valid, targets), skipped: [] };
  }
  // No target or a channel: what is valid runs; a broken file is listed, not fatal.
  if (!valid.some((b) => b.enabled) && broken.length) {
    throw new ConfigError(
      "CONFIG_INVALID",
      broken
        .flatMap((b) => b.problems)
        .map(formatProblem)
        .join("\n"),
      { hint: "no bot file is valid; run `bots config check` after fixing" },
    );
  }
  const bots = selectBots(valid, targets);
  if (!c.json)
    for (const b of broken)
      c.err(chalk.yellow(`not started: ${b.name} (${formatProblem(b.problems[0]!)}${b.problems.length > 1 ? `, and ${b.problems.length - 1} more` : ""})`));
  return { bots, skipped: broken };
}

/**
 * For each selected bot this instance does not own after its first placement round: who runs
 * it (`bot_owners` and the owner's `instances` row), as the line `bots start` prints.
 */
async function standbyLines(
  store: Store,
  bots: string[],
): Promise<Array<{ bot: string; owner: string | null; host: string | null; pid: number | null; line: string }>> {
  if (!bots.length) return [];
  const scale = await collectScale(store);
  return bots.map((bot) => {
    const owner = scale.owners.find((o) => o.bot === bot)?.owner ?? null;
    const inst = owner ? scale.instances.find((i) => i.id === owner) : undefined;
    const line = owner
      ? `${bot} is run by instance ${owner}${inst ? ` on ${inst.host} (pid ${inst.pid})` : ""}; this instance stands by and takes over if it stops`
      : `${bot} has no owner yet; this instance stands by and takes it at the next placement round`;
    return { bot, owner, host: inst?.host ?? null, pid: inst?.pid ?? null, line };
  });
}
