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
import { acceptedUpdates, buildFeatures } from "./features/index.js";
import { PushedIngress } from "./ingress.js";
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
  /** The review passes of a 2GIS bot (src/poll-2gis.ts `pollEvery`); ends once the worker stopped. */
  polling?: Promise<void>;
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

/** What one bot needs from the instance that runs it ({@link buildBot}, {@link launchBot}). */
export interface BotHost {
  options: StartOptions;
  /** This process's id in leases, fences and recovery runs. */
  holder: string;
  /** A fenced write: another instance took the bot, so ownership is read again now, not at the next round. */
  onFenced(): void;
  /** Pipeline `catchUp`: whether another instance may have recorded this bot's messages lately. */
  mayBeRecordedElsewhere(bot: BotConfig): boolean;
  /** Pipeline `leaseFresh`: this instance's heartbeat is within its lease. */
  leaseFresh(): boolean;
}

/**
 * Builds the channel worker of a bot: `options.createWorker` (tests) or the channel's factory
 * (src/channels/index.ts).
 * @throws UsageError when the channel is not available; whatever the factory throws
 */
async function workerFor(bot: BotConfig, logger: Logger, options: StartOptions): Promise<ChannelWorker> {
  const create = options.createWorker ?? channelFactory(bot.channel);
  return create(bot, logger, { store: options.store, now: options.now });
}

/** The websocket notifier of a bot with a `websocket:` section (it never blocks the pipeline). */
export function notifierFor(bot: BotConfig, logger: Logger): Notifier | undefined {
  const ws = bot.websocket;
  return ws ? new WebSocketNotifier({ url: ws.url, token: ws.token, maxQueue: ws.max_queue, logger }) : undefined;
}

/**
 * Builds everything one bot runs on, owned at fencing `epoch`: channel worker, LLM client,
 * notifier, features, and the pipeline joining them. Nothing receives or runs yet
 * ({@link launchBot} does): the result is not `ready`.
 * @throws whatever the channel factory or a feature's construction throws
 */
export async function buildBot(bot: BotConfig, epoch: number, host: BotHost): Promise<RunningBot> {
  const { options } = host;
  const logger = options.logging.forBot(bot.name);
  const worker = await workerFor(bot, logger, options);
  const notifier = notifierFor(bot, logger);
  const llm = llmFor(bot, logger, options.llm);
  // A bot that is built answers next: the SDK loads while it starts, not on its first message.
  llm.warm();
  const fence = { bot: bot.name, owner: host.holder, epoch };
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
    onFenced: host.onFenced,
    catchUp: () => host.mayBeRecordedElsewhere(bot),
    leaseFresh: host.leaseFresh,
  });
  return { config: bot, pipeline, worker, notifier, logger, features, epoch, ready: false };
}

/**
 * Runs a bot built by {@link buildBot}: adds it to `running` (a loss of ownership during its
 * start finds it there), recovers it (durable answers, docs/durability.md: resumed messages are
 * queued ahead of new ones), starts receiving (the channel worker; for 2GIS the review passes of
 * src/poll-2gis.ts, which recover inside each pass under its lease) and its features, and marks
 * it `ready`. When any of that fails it is removed from `running`, stopped ({@link haltBot}, 1 s
 * for answers) and the error is thrown.
 * @throws ChannelError naming the bot whose channel refused it; whatever recovery or a feature's start threw
 */
export async function launchBot(entry: RunningBot, host: BotHost, running: RunningBot[]): Promise<void> {
  const { config: bot, pipeline, worker, logger } = entry;
  const { options } = host;
  running.push(entry);
  try {
    if (bot.channel !== "2gis") {
      const fence = { bot: bot.name, owner: host.holder, epoch: entry.epoch };
      entry.recovery = await recoverBot({ bot, store: options.store, pipeline, logger, holder: host.holder, now: options.now, fence });
    }
    await worker.start(pipeline);
    if (bot.channel === "2gis") entry.polling = (await import("./poll-2gis.js")).pollEvery(worker, pipeline, logger);
    for (const f of entry.features) await f.start?.();
    entry.ready = true;
  } catch (error) {
    running.splice(running.indexOf(entry), 1);
    await haltBot(entry, 1000);
    throw error;
  }
}

/** Stops a bot's receiving: its channel worker (a failure is logged), and the 2GIS passes, waiting for the one running to end. */
async function stopReceiving(r: RunningBot): Promise<void> {
  await r.worker.stop().catch((e) => r.logger.warn({ err: e }, "stopping channel failed"));
  await r.polling;
}

/**
 * Stops one bot: receiving first, then lets its answers in flight finish for at most `drainMs`,
 * then its features (after the drain: an answer finishing may still use one, a lead's e-mail)
 * and its notifier. Failures to stop are logged, not thrown.
 * @returns answers left unfinished (they stay stored for the next start or `bots replay --send`)
 */
export async function haltBot(r: RunningBot, drainMs: number): Promise<number> {
  await stopReceiving(r);
  const left = await r.pipeline.drain(drainMs);
  await Promise.all(r.features.map((f) => f.stop?.().catch((e) => r.logger.warn({ err: e, feature: f.name }, "stopping feature failed"))));
  await r.notifier?.close();
  return left;
}

/**
 * A worker that records a pushed bot's updates into a record-only pipeline without answering
 * them, for an instance that does not own the bot (src/ingress.ts).
 * @throws ChannelError when the channel cannot be reached to prepare
 */
async function recordOnlyWorker(bot: BotConfig, options: StartOptions): Promise<ChannelWorker> {
  const logger = options.logging.forBot(bot.name);
  const worker = await workerFor(bot, logger, options);
  const pipeline = new Pipeline({
    bot,
    store: options.store,
    llm: llmFor(bot, logger, options.llm),
    channel: worker,
    logger,
    now: options.now,
    onIntake: options.onIntake,
    recordOnly: true,
    // No feature runs here, but the same updates are recorded as the owner's features take.
    accepts: acceptedUpdates(bot),
  });
  await worker.attach!(pipeline);
  return worker;
}

/**
 * One `bots start` instance: its ownership of the bots (scale-out, docs/scaling.md), the bots it
 * runs, the inbox sweep for rows other instances recorded, and the ingress for pushed updates.
 */
class Instance {
  readonly bots: RunningBot[] = [];
  readonly ownership: Ownership;
  private readonly host: BotHost;
  private readonly byName: Map<string, BotConfig>;
  private readonly inbox: InboxSweep;
  private readonly ingress?: PushedIngress;
  /** Bots being stopped here, or stopped with their last answers still being stored: how many such runs of each. */
  private readonly finishing = new Map<string, number>();
  /** When peers were last seen alive, epoch ms (catch-up at intake lasts a minute past that). */
  private peersSeenMs = -Infinity;
  /** True during the first placement round: a bot failing to start there fails the whole start. */
  private starting = true;
  private firstError: unknown;

  constructor(
    private readonly options: StartOptions,
    holder: string,
  ) {
    this.byName = new Map(options.bots.map((b) => [b.name, b]));
    this.host = {
      options,
      holder,
      onFenced: () => void this.ownership.tick(),
      mayBeRecordedElsewhere: (bot) => this.mayBeRecordedElsewhere(bot),
      leaseFresh: () => this.ownership.leaseFresh(),
    };
    this.ownership = new Ownership({
      store: options.store,
      id: holder,
      bots: options.bots.filter((b) => b.instance === undefined || b.instance === holder).map((b) => b.name),
      logger: options.logging.root,
      ttlMs: options.leaseTtlMs,
      host: options.host,
      // SQLite is one host: a second `bots start` owns nothing until the first dies.
      rebalance: options.store.database.dialect === "mysql",
      onAcquire: (name, epoch) => this.acquire(name, epoch),
      onLose: (name, reason) => this.lose(name, reason),
      busy: (name) => this.finishing.has(name),
    });
    this.inbox = new InboxSweep({
      store: options.store,
      logger: options.logging.root,
      now: options.now,
      intervalMs: () => this.inboxIntervalMs(),
      bots: () =>
        this.bots.filter((r) => r.ready).map((r) => ({ config: r.config, pipeline: r.pipeline, fence: { bot: r.config.name, owner: holder, epoch: r.epoch } })),
      onFenced: () => void this.ownership.tick(),
    });
    if (options.http)
      this.ingress = new PushedIngress({
        bots: options.bots,
        http: options.http,
        logging: options.logging,
        owned: (name) => this.bots.find((r) => r.config.name === name && r.ready)?.worker,
        createRecorder: (bot) => recordOnlyWorker(bot, options),
      });
  }

  /**
   * Mounts the ingress, runs the first placement round (starting the bots owned) and the inbox sweep.
   * @throws the first error of a bot that could not start in that round, after stopping everything
   */
  async start(): Promise<void> {
    this.ingress?.mount();
    await this.ownership.start();
    this.starting = false;
    this.inbox.start();
    if (this.firstError !== undefined) {
      await this.stop(1000);
      throw this.firstError;
    }
  }

  /** Ownership took a bot: build and launch it. */
  private async acquire(name: string, epoch: number): Promise<void> {
    const entry = await buildBot(this.byName.get(name)!, epoch, this.host);
    try {
      await launchBot(entry, this.host, this.bots);
    } catch (error) {
      if (this.starting) this.firstError ??= error;
      throw error;
    }
  }

  /**
   * Ownership lost or handed over a bot: stop it here, giving its answers in flight
   * `handOverDrainMs`. From then until its last answers are stored the row stays ours (`busy`):
   * a round running beside this drain (a heartbeat past the lease demotes from outside the
   * round) must not give it up, or the next owner's recovery would find an answer of this run in
   * `delivering`.
   */
  private async lose(name: string, reason: string): Promise<void> {
    const r = this.bots.find((x) => x.config.name === name);
    if (!r) return;
    this.bots.splice(this.bots.indexOf(r), 1);
    const done = this.holdRow(name);
    try {
      const left = await haltBot(r, this.options.handOverDrainMs ?? 10_000);
      r.logger.info({ reason, unfinished: left }, "bot stopped on this instance (ownership)");
    } finally {
      // Answers still finishing (a settle waiting for the database): the row stays ours until they end.
      if (r.pipeline.backlog > 0) void r.pipeline.onIdle().finally(done);
      else done();
    }
  }

  /** Counts one more run of `name` finishing here ({@link finishing}); the function returned ends it. */
  private holdRow(name: string): () => void {
    this.finishing.set(name, (this.finishing.get(name) ?? 0) + 1);
    return () => {
      const n = this.finishing.get(name)!;
      if (n === 1) this.finishing.delete(name);
      else this.finishing.set(name, n - 1);
    };
  }

  /**
   * Catch-up at intake (Pipeline's `catchUp`) while another instance may have recorded a bot's
   * messages: peers alive now or within the last minute (a peer paused or cut off may still
   * record what it polled before it lost the bot), or webhooks/callbacks reaching any instance.
   */
  private mayBeRecordedElsewhere(bot: BotConfig): boolean {
    const now = Date.now();
    if (this.ownership.peers > 0) this.peersSeenMs = now;
    return now - this.peersSeenMs < 60_000 || receivesPushed(bot);
  }

  /**
   * Pause before the next inbox sweep, ms: short while others may record this instance's bots
   * (peers alive, or webhooks/callbacks: another process may serve the same port range behind a
   * balancer even on one host), else long.
   */
  private inboxIntervalMs(): number {
    const [aloneMs, peersMs] = this.options.inboxIntervalMs ?? [1000, 100];
    return this.ownership.peers > 0 || this.bots.some((r) => receivesPushed(r.config)) ? peersMs : aloneMs;
  }

  /**
   * Stops receiving on every bot, lets answers in flight finish for at most `drainMs`, then gives
   * ownership back (stopping each bot's features and notifier) and closes the ingress.
   * @returns answers left unfinished
   */
  async stop(drainMs = 10_000): Promise<number> {
    await this.inbox.stop();
    await Promise.all(this.bots.map(stopReceiving));
    const left = await Promise.all(this.bots.map((r) => r.pipeline.drain(drainMs)));
    await this.ownership.stop();
    await this.ingress?.close();
    const unfinished = left.reduce((a, b) => a + b, 0);
    if (unfinished)
      this.options.logging.root.warn({ unfinished }, "answers unfinished at shutdown were refunded and stay `received`; the next start answers them");
    return unfinished;
  }
}

/**
 * Starts the given bots that this instance owns (scale-out, docs/scaling.md): registers the
 * instance, and for every bot it comes to own (at once when alone; see {@link Ownership})
 * builds and launches it ({@link buildBot}, {@link launchBot}). A bot it loses or hands over is
 * stopped and drained; one it takes over later is started the same way. Pushed updates of every
 * given bot are served on `options.http` (src/ingress.ts). If a bot cannot start during the first
 * placement (refused token), everything is stopped and the error is thrown.
 * @throws ChannelError naming the bot whose channel refused it
 */
export async function startBots(options: StartOptions): Promise<RunningBots> {
  registerSecrets(secretsOf(options.bots));
  const instance = new Instance(options, options.instanceId ?? options.holder ?? processHolder());
  await instance.start();
  return { bots: instance.bots, ownership: instance.ownership, stop: (drainMs) => instance.stop(drainMs) };
}

/** Secret values in bot configs, to scrub from logs. */
export function secretsOf(bots: BotConfig[]): string[] {
  return botSecrets(bots);
}
