import chalk from "chalk";
import { createLogging } from "../logging.js";
import { secretsOf, selectBots, startBots } from "../runner.js";
import { collectScale } from "../core/ownership.js";
import { openStore, type Store } from "../storage/index.js";
import { UsageError } from "../errors.js";
import type { CliContext } from "./context.js";
import { checkIngress, parseHttpOptions, startOpsServer, type OpsServer, type StartCommandOptions } from "../ops/serve.js";
import { loadBots, requireConfigDir } from "./shared.js";

/**
 * `bots start [TARGET...]`: runs the selected bots until SIGINT or SIGTERM, then stops
 * receiving, lets answers in flight finish (at most `--drain-timeout` seconds), flushes logs and
 * returns (exit 0). A second signal exits at once.
 * @throws ConfigError (exit 2) for bad configs, UsageError (exit 2) for unknown targets,
 * StorageError or ChannelError (exit 1) when the database or a channel refuses to start
 */
export async function startCommand(c: CliContext, targets: string[], opts: StartCommandOptions & { instanceId?: string; leaseTtl?: string }): Promise<void> {
  const drainS = Number(opts.drainTimeout);
  if (!Number.isFinite(drainS) || drainS < 0) throw new UsageError("DRAIN_INVALID", `--drain-timeout must be seconds ≥ 0, got '${opts.drainTimeout}'`);
  const http = parseHttpOptions(opts);
  const leaseTtlS = Number(opts.leaseTtl ?? "15");
  if (!Number.isFinite(leaseTtlS) || leaseTtlS < 1 || leaseTtlS > 3600) throw new UsageError("LEASE_TTL_INVALID", `--lease-ttl must be seconds from 1 to 3600, got '${opts.leaseTtl}'`);
  if (opts.instanceId !== undefined && !/^[A-Za-z0-9._:-]{1,191}$/.test(opts.instanceId)) throw new UsageError("INSTANCE_ID_INVALID", `--instance-id must be 1-191 letters, digits, '.', '_', ':' or '-', got '${opts.instanceId}'`);
  requireConfigDir(c);
  const bots = selectBots(loadBots(c), targets);
  checkIngress(bots, http);
  const logging = createLogging({ logDir: c.logDir, level: c.verbose ? "debug" : "info", color: c.color, secrets: secretsOf(bots) });
  const store = await openStore(c.dbUrl);
  let running: Awaited<ReturnType<typeof startBots>> | undefined;
  let ops: OpsServer | undefined;
  try {
    // The HTTP server comes first so /readyz answers 503 while bots connect.
    if (http) ops = await startOpsServer({ ...http, bots, store, logging, running: () => running });
    running = await startBots({ bots, store, logging, env: c.env, ...ops?.hooks, instanceId: opts.instanceId, leaseTtlMs: leaseTtlS * 1000, http: ops?.server, host: c.env.BOTS_HOST || undefined });
    const r = running;
    ops?.metrics.attach(() => r.bots.map((b) => ({ name: b.config.name, backlog: () => b.pipeline.backlog, inFlight: () => b.pipeline.answersInFlight })));
  } catch (error) {
    await ops?.server.close();
    await store.close();
    await logging.flush();
    throw error;
  }
  logging.root.info({ bots: bots.map((b) => b.name), owned: running.bots.map((b) => b.config.name), database: store.database.safeUrl, http_port: ops?.server.port ?? null }, "bots started");
  if (ops && !c.json) c.err(`HTTP on ${http!.host}:${ops.server.port}: /metrics /healthz /readyz`);
  const owned = new Set(running.bots.map((b) => b.config.name));
  const standby = await standbyLines(store, bots.filter((b) => !owned.has(b.name)).map((b) => b.name));
  if (!c.json) {
    if (owned.size) c.err(chalk.green(`Running ${bots.filter((b) => owned.has(b.name)).map((b) => `${b.name} (${b.channel})`).join(", ")}. Press Ctrl-C to stop.`));
    for (const s of standby) c.err(chalk.yellow(s.line));
    if (!owned.size) c.err(chalk.dim("Press Ctrl-C to stop."));
  } else {
    c.out(JSON.stringify({ started: bots.filter((b) => owned.has(b.name)).map((b) => ({ name: b.name, channel: b.channel })), standby: standby.map(({ line: _, ...s }) => s), http_port: ops?.server.port ?? null }));
  }

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once("SIGINT", () => resolve("SIGINT"));
    process.once("SIGTERM", () => resolve("SIGTERM"));
  });
  const force = () => {
    logging.root.error("second signal: exiting without waiting");
    process.exit(1);
  };
  process.once("SIGINT", force);
  process.once("SIGTERM", force);
  logging.root.info({ signal }, "stopping: no new messages, finishing answers in flight");
  const unfinished = await running.stop(drainS * 1000);
  await ops?.server.close();
  await store.close();
  logging.root.info({ unfinished }, "stopped");
  await logging.flush();
}

/**
 * For each selected bot this instance does not own after its first placement round: who runs
 * it (`bot_owners` and the owner's `instances` row), as the line `bots start` prints.
 */
async function standbyLines(store: Store, bots: string[]): Promise<Array<{ bot: string; owner: string | null; host: string | null; pid: number | null; line: string }>> {
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
