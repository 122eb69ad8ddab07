import type http from "node:http";
import type { Logger } from "pino";
import type { BotConfig } from "../config/schema.js";
import type { Pipeline } from "../core/pipeline.js";
import type { ChannelSender } from "../core/types.js";
import type { Store } from "../storage/index.js";
import type { ChannelHealth } from "./health.js";

/**
 * A running channel for one bot: receives updates and hands them to the pipeline, and sends
 * answers. Channels translate; the core decides.
 */
export interface ChannelWorker extends ChannelSender {
  /**
   * Checks credentials and starts receiving.
   * @throws ChannelError when the credentials are refused (exit 1 in `bots start`)
   */
  start(pipeline: Pipeline): Promise<void>;
  /** Stops receiving; answers already taken still finish (they use `send`). */
  stop(): Promise<void>;
  /**
   * Whether the worker is receiving and how its remote calls fare (for `/healthz`). Optional:
   * a worker without it counts as healthy while started.
   */
  health?(): ChannelHealth;
  /**
   * Serves one pushed update on the instance's HTTP ingress: `POST /tg/<bot>` (a Telegram
   * webhook call) or `POST /vk/<bot>` (a VK Callback API call). Ends the response once the update
   * is recorded (or refused). Only channels with pushed updates have it.
   */
  handleHttp?(req: http.IncomingMessage, res: http.ServerResponse): Promise<void>;
  /**
   * Makes {@link handleHttp} record into `pipeline` without {@link start} (an instance that does
   * not own the bot records pushed updates; the owner answers them).
   * @throws ChannelError when the channel cannot be reached to prepare (tried again next call)
   */
  attach?(pipeline: Pipeline): Promise<void>;
}

/** What a channel may use besides its own API: the database (VK stores wall posts, 2GIS keeps its lease and cursors), the clock. */
export interface ChannelDeps {
  store: Store;
  /** Clock, epoch ms UTC. @defaultValue Date.now */
  now?: () => number;
}

/** Builds a worker for a bot; channels are imported lazily. */
export type ChannelFactory = (bot: BotConfig, logger: Logger, deps: ChannelDeps) => Promise<ChannelWorker>;
