import type http from "node:http";
import type { Logger } from "pino";
import { audioFetcherFor, imageFetcherFor } from "./channels/files.js";
import type { TelegramFilesOptions } from "./channels/telegram/files.js";
import { channelFactory, receivesPushed } from "./channels/index.js";
import type { ChannelDeps, ChannelWorker } from "./channels/types.js";
import type { BotConfig } from "./config/schema.js";
import { Pipeline, type Feature, type PipelineDeps } from "./core/pipeline.js";
import { InboxSweep } from "./core/inbox.js";
import { Ownership } from "./core/ownership.js";
import { processHolder, recoverBot, type RecoveryReport } from "./core/recovery.js";
import type { Notifier } from "./core/types.js";
import { UsageError } from "./errors.js";
import type { HttpServer } from "./http/server.js";
import { buildFeatures } from "./features/index.js";
import { LlmClient, type LlmOptions } from "./llm/client.js";
import type { Logging } from "./logging.js";
import { WebSocketNotifier } from "./notify/websocket.js";
import { botSecrets, registerSecrets } from "./secrets.js";
import type { Store } from "./storage/index.js";

/** One bot running in this process. */
export interface RunningBot {
  config: BotConfig;
  pipeline: Pipeline;
  worker: ChannelWorker;
  notifier?: Notifier;
  logger: Logger;
  features: Feature[];
  /** Fencing epoch at which this instance owns the bot (`bot_owners`). */
  epoch: number;
  /** What recovery did when this instance took the bot (not for 2GIS, which recovers per pass). */
  recovery?: RecoveryReport;
  /**
   * Recovered and receiving. Until then the inbox sweep leaves the bot alone (recovery first
   * refunds what an earlier attempt left reserved, then resumes in order) and pushed updates go
   * to the record-only path.
   */
  ready: boolean;
}

/** Everything {@link startBots} needs; tests pass local servers' workers and short timeouts. */
export interface StartOptions {
  bots: BotConfig[];
  store: Store;
  logging: Logging;
  now?: () => number;
  /** Overrides the channel factory (tests wrap workers). */
  createWorker?: (bot: BotConfig, logger: Logger, deps: ChannelDeps) => Promise<ChannelWorker>;
  /** Features per bot. @defaultValue {@link buildFeatures} from the bot's `features:` */
  features?: (bot: BotConfig, logger: Logger) => Feature[];
  /** Environment for features (SMTP and the like). */
  env?: Record<string, string>;
  /** LLM tuning (tests shorten back-off). */
  llm?: Partial<Pick<LlmOptions, "retry">>;
  /** Observes every message's end (benches, metrics). */
  onOutcome?: PipelineDeps["onOutcome"];
  /** Observes every message's intake (metrics). */
  onIntake?: PipelineDeps["onIntake"];
  /** Picture download tuning (tests shorten back-off). */
  images?: TelegramFilesOptions;
  /** This process's id in leases and recovery runs. @defaultValue `host:pid:random` */
  holder?: string;
  /** Instance id (`--instance-id`); overrides `holder`. */
  instanceId?: string;
  /** Heartbeat age past which an instance is dead and its bots are taken over, ms (`--lease-ttl`). @defaultValue 15000 */
  leaseTtlMs?: number;
  /** Host name stored in this instance's row (env `BOTS_HOST`). @defaultValue os.hostname() */
  host?: string;
  /** How long a bot handed over or lost may finish its answers, ms. @defaultValue 10000 */
  handOverDrainMs?: number;
  /**
   * Pause between inbox sweeps (rows of owned bots recorded by another instance), ms: `[alone
   * with polling bots only, with peers or with a webhook/callback bot]`. @defaultValue [1000, 100]
   */
  inboxIntervalMs?: [number, number];
  /**
   * The process's HTTP server: Telegram webhooks (`/tg/<bot>`) and VK callbacks (`/vk/<bot>`) of
   * every selected bot are served on it, owned or not (a non-owner records, the owner answers).
   */
  http?: HttpServer;
}

/** Bots started by {@link startBots}. */
export interface RunningBots {
  /** Bots this instance owns and runs now (changes as ownership moves). */
  bots: RunningBot[];
  /** This instance's ownership (instances, owners, epochs). */
  ownership: Ownership;
  /**
   * Stops receiving on every bot, lets answers in flight finish for at most `drainMs`, closes
   * notifiers.
   * @returns answers left unfinished (they stay stored for `bots replay --send`)
   */
  stop(drainMs?: number): Promise<number>;
}

/**
 * Builds the LLM client of a bot from its `llm:` section.
 */
export function llmFor(bot: BotConfig, logger: Logger, extra: Partial<LlmOptions> = {}): LlmClient {
  const l = bot.llm;
  return new LlmClient({
    apiKey: l.api_key,
    baseURL: l.base_url,
    model: l.model,
    temperature: l.temperature,
    maxTokens: l.max_tokens,
    timeoutMs: l.timeout_s * 1000,
    maxRetries: l.max_retries,
    onRetry: (err, attempt, waitMs) => logger.warn({ err, attempt, wait_ms: Math.round(waitMs) }, "model call failed; retrying"),
    ...extra,
  });
}

/**
 * Selects bots by command-line targets: bot names or channels (`tg`, `vk`, `2gis`). No target
 * selects every enabled bot; a channel selects its enabled bots; a name selects that bot even if
 * disabled.
 * @throws UsageError for an unknown target or an empty selection
 */
export function selectBots(all: BotConfig[], targets: string[]): BotConfig[] {
  if (targets.length === 0) {
    const enabled = all.filter((b) => b.enabled);
    if (!enabled.length)
      throw new UsageError("NO_BOTS", all.length ? "every bot is disabled (enabled: false)" : "no bot configs found", {
        hint: "add configs/NAME.yaml (see configs/examples/) or pass --config-dir",
      });
    return enabled;
  }
  const chosen = new Map<string, BotConfig>();
  for (const t of targets) {
    const byName = all.find((b) => b.name === t);
    if (byName) {
      chosen.set(byName.name, byName);
      continue;
    }
    if (t === "tg" || t === "vk" || t === "2gis") {
      const of = all.filter((b) => b.channel === t && b.enabled);
      if (!of.length) throw new UsageError("NO_BOTS", `no enabled ${t} bots in the config dir`, { hint: "check channel: and enabled: in configs/*.yaml" });
      for (const b of of) chosen.set(b.name, b);
      continue;
    }
    throw new UsageError("UNKNOWN_TARGET", `'${t}' is neither a bot nor a channel`, {
      hint: `bots: ${all.map((b) => b.name).join(", ") || "none"}; channels: tg, vk, 2gis`,
    });
  }
  return [...chosen.values()];
}

/**
 * Starts the given bots that this instance owns (scale-out, docs/scaling.md): registers the instance,
 * and for every bot it comes to own (at once when alone; see {@link Ownership}) recovers it
 * (durable answers) and starts its LLM client, notifier, pipeline, channel worker and features.
 * A bot it loses or hands over is stopped and drained; one it takes over later is started the
 * same way. If a bot cannot start during the first placement (refused token), everything is
 * stopped and the error is thrown.
 * @throws ChannelError naming the bot whose channel refused it
 */
export async function startBots(options: StartOptions): Promise<RunningBots> {
  registerSecrets(secretsOf(options.bots));
  const running: RunningBot[] = [];
  const holder = options.instanceId ?? options.holder ?? processHolder();
  const byName = new Map(options.bots.map((b) => [b.name, b]));
  let firstError: unknown;
  let starting = true;
  const halt = async (r: RunningBot, drainMs: number): Promise<number> => {
    await r.worker.stop().catch((e) => r.logger.warn({ err: e }, "stopping channel failed"));
    const left = await r.pipeline.drain(drainMs);
    // After the drain: answers finishing now may still use a feature (a lead's e-mail).
    await Promise.all(r.features.map((f) => f.stop?.().catch((e) => r.logger.warn({ err: e, feature: f.name }, "stopping feature failed"))));
    await r.notifier?.close();
    return left;
  };
  const launch = async (bot: BotConfig, epoch: number): Promise<void> => {
    const logger = options.logging.forBot(bot.name);
    const create = options.createWorker ?? channelFactory(bot.channel);
    const worker = await create(bot, logger, { store: options.store, now: options.now });
    const notifier = bot.websocket
      ? new WebSocketNotifier({ url: bot.websocket.url, token: bot.websocket.token, maxQueue: bot.websocket.max_queue, logger })
      : undefined;
    const llm = llmFor(bot, logger, options.llm);
    const fence = { bot: bot.name, owner: holder, epoch };
    // A fenced write means another instance took the bot: re-read ownership now, not at the next round.
    const onFenced = () => void ownership.tick();
    const features =
      options.features?.(bot, logger) ??
      buildFeatures(bot, { store: options.store, logger, now: options.now ?? Date.now, env: options.env, channel: worker, llm, fence });
    const pipeline = new Pipeline({
      bot,
      store: options.store,
      llm,
      channel: worker,
      logger,
      notifier,
      features,
      now: options.now,
      onOutcome: options.onOutcome,
      onIntake: options.onIntake,
      images: imageFetcherFor(bot, options.images),
      audio: audioFetcherFor(bot, options.images),
      fence,
      onFenced,
      catchUp: () => mayBeRecordedElsewhere(bot),
      leaseFresh: () => ownership.leaseFresh(),
    });
    const entry: RunningBot = { config: bot, pipeline, worker, notifier, logger, features, epoch, ready: false };
    running.push(entry);
    try {
      // Recovery before receiving (docs/durability.md): resumed messages are queued ahead of new ones.
      // 2GIS recovers inside each pass, under the pass's lease.
      if (bot.channel !== "2gis") entry.recovery = await recoverBot({ bot, store: options.store, pipeline, logger, holder, now: options.now, fence });
      await worker.start(pipeline);
      for (const f of features) await f.start?.();
      entry.ready = true;
    } catch (error) {
      running.splice(running.indexOf(entry), 1);
      await halt(entry, 1000);
      if (starting) firstError ??= error;
      throw error;
    }
  };
  /** Bots being stopped here, or stopped with their last answers still being stored: how many such runs of each. */
  const finishing = new Map<string, number>();
  const ownership = new Ownership({
    store: options.store,
    id: holder,
    bots: options.bots.filter((b) => b.instance === undefined || b.instance === holder).map((b) => b.name),
    logger: options.logging.root,
    ttlMs: options.leaseTtlMs,
    host: options.host,
    // SQLite is one host: a second `bots start` owns nothing until the first dies.
    rebalance: options.store.database.dialect === "mysql",
    onAcquire: (name, epoch) => launch(byName.get(name)!, epoch),
    onLose: async (name, reason) => {
      const r = running.find((x) => x.config.name === name);
      if (!r) return;
      running.splice(running.indexOf(r), 1);
      // From now until its last answers are stored, the row stays ours: a round running beside
      // this drain (a heartbeat past the lease demotes from outside the round) must not give it
      // up, or the next owner's recovery would find an answer of this run in `delivering`.
      finishing.set(name, (finishing.get(name) ?? 0) + 1);
      const done = () => (finishing.get(name) === 1 ? finishing.delete(name) : finishing.set(name, finishing.get(name)! - 1));
      try {
        const left = await halt(r, options.handOverDrainMs ?? 10_000);
        r.logger.info({ reason, unfinished: left }, "bot stopped on this instance (ownership)");
      } finally {
        // Answers still finishing (a settle waiting for the database): the row stays ours until they end.
        if (r.pipeline.backlog > 0) void r.pipeline.onIdle().finally(done);
        else done();
      }
    },
    busy: (name) => finishing.has(name),
  });
  // Catch-up at intake (Pipeline's `catchUp`) while another instance may have recorded a bot's
  // messages: peers alive now or within the last minute (a peer paused or cut off may still
  // record what it polled before it lost the bot), or webhooks/callbacks reaching any instance.
  let peersSeenMs = -Infinity;
  const mayBeRecordedElsewhere = (bot: BotConfig): boolean => {
    const now = Date.now();
    if (ownership.peers > 0) peersSeenMs = now;
    return now - peersSeenMs < 60_000 || receivesPushed(bot);
  };
  const [aloneMs, peersMs] = options.inboxIntervalMs ?? [1000, 100];
  const inbox = new InboxSweep({
    store: options.store,
    logger: options.logging.root,
    now: options.now,
    // Often while others may record this instance's bots: peers alive, or webhooks/callbacks
    // (another process may serve the same port range behind a balancer even on one host).
    intervalMs: () => (ownership.peers > 0 || running.some((r) => receivesPushed(r.config)) ? peersMs : aloneMs),
    bots: () =>
      running.filter((r) => r.ready).map((r) => ({ config: r.config, pipeline: r.pipeline, fence: { bot: r.config.name, owner: holder, epoch: r.epoch } })),
    onFenced: () => void ownership.tick(),
  });
  // One ingress for pushed updates: any instance records any bot's update; the owner answers it
  // (at once when the owner took it, else through its inbox sweep).
  const recorders = new Map<string, Promise<ChannelWorker>>();
  const recorderFor = (bot: BotConfig): Promise<ChannelWorker> => {
    let r = recorders.get(bot.name);
    if (!r) {
      r = (async () => {
        const logger = options.logging.forBot(bot.name);
        const worker = await (options.createWorker ?? channelFactory(bot.channel))(bot, logger, { store: options.store, now: options.now });
        const pipeline = new Pipeline({
          bot,
          store: options.store,
          llm: llmFor(bot, logger, options.llm),
          channel: worker,
          logger,
          now: options.now,
          onIntake: options.onIntake,
          recordOnly: true,
        });
        await worker.attach!(pipeline);
        return worker;
      })();
      r.catch(() => recorders.delete(bot.name));
      recorders.set(bot.name, r);
    }
    return r;
  };
  const mounted: string[] = [];
  const pushed = new Map(options.bots.filter(receivesPushed).map((b) => [`/${b.channel === "tg" ? "tg" : "vk"}/${b.name}`, b]));
  if (options.http && pushed.size) {
    const ingress = async (req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> => {
      const bot = pushed.get(decodeURIComponent(url.pathname));
      if (!bot) return void res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("no such bot here\n");
      const owned = running.find((r) => r.config.name === bot.name && r.ready);
      let worker: ChannelWorker;
      try {
        worker = owned?.worker ?? (await recorderFor(bot));
      } catch (error) {
        options.logging.forBot(bot.name).error({ err: error }, "cannot take pushed updates now (channel unreachable); answered 503, the sender retries");
        return void res.writeHead(503, { "content-type": "text/plain; charset=utf-8" }).end("unavailable\n");
      }
      await worker.handleHttp!(req, res);
    };
    for (const prefix of new Set([...pushed.keys()].map((p) => p.slice(0, 4)))) {
      options.http.route("*", prefix, ingress);
      mounted.push(prefix);
    }
  }
  const stop = async (drainMs = 10_000): Promise<number> => {
    await inbox.stop();
    // Stop receiving everywhere first, then drain; ownership is given back only after the drain.
    await Promise.all(running.map((r) => r.worker.stop().catch((e) => r.logger.warn({ err: e }, "stopping channel failed"))));
    const left = await Promise.all(running.map((r) => r.pipeline.drain(drainMs)));
    await ownership.stop();
    await Promise.all([...recorders.values()].map((r) => r.then((w) => w.stop()).catch(() => undefined)));
    for (const prefix of mounted) options.http?.unroute(prefix);
    const unfinished = left.reduce((a, b) => a + b, 0);
    if (unfinished) options.logging.root.warn({ unfinished }, "answers unfinished at shutdown were refunded and stay `received`; the next start answers them");
    return unfinished;
  };
  await ownership.start();
  starting = false;
  inbox.start();
  if (firstError !== undefined) {
    await stop(1000);
    throw firstError;
  }
  return { bots: running, stop, ownership };
}

/** Secret values in bot configs, to scrub from logs. */
export function secretsOf(bots: BotConfig[]): string[] {
  return botSecrets(bots);
}
