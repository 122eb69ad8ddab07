import type http from "node:http";
import { receivesPushed } from "./channels/index.js";
import type { ChannelWorker } from "./channels/types.js";
import type { BotConfig } from "./config/schema.js";
import type { HttpServer } from "./http/server.js";
import type { Logging } from "./logging.js";

/** What {@link PushedIngress} routes to and with. */
export interface IngressOptions {
  /** Every bot of the process; those with pushed updates ({@link receivesPushed}) get a path. */
  bots: BotConfig[];
  /** The process's HTTP server. */
  http: HttpServer;
  logging: Logging;
  /** The worker of a bot this instance runs and has recovered (it records and answers), else undefined. */
  owned(bot: string): ChannelWorker | undefined;
  /**
   * Builds a worker that records the bot's pushed updates without answering them (a record-only
   * pipeline attached; the owner answers through its inbox sweep).
   * @throws ChannelError when the channel cannot be reached to prepare (tried again next update)
   */
  createRecorder(bot: BotConfig): Promise<ChannelWorker>;
}

/**
 * The one ingress of a process for pushed updates: Telegram webhook calls (`POST /tg/<bot>`) and
 * VK Callback API calls (`POST /vk/<bot>`) of every bot given, owned here or not. Any instance
 * records any bot's update; the owner answers it (at once when the owner took it, else through
 * its inbox sweep, src/core/inbox.ts). The channel's `handleHttp` answers the request
 * (src/channels/ingress-http.ts); here: 404 for a bot not served here, 503 when no worker can
 * take the update now.
 */
export class PushedIngress {
  /** Pushed bots by path (`/tg/<bot>`, `/vk/<bot>`). */
  private readonly byPath: Map<string, BotConfig>;
  /** Record-only workers by bot name, built on first use; a failed build is forgotten (tried again). */
  private readonly recorders = new Map<string, Promise<ChannelWorker>>();
  private readonly mounted: string[] = [];

  constructor(private readonly o: IngressOptions) {
    this.byPath = new Map(o.bots.filter(receivesPushed).map((b) => [`/${b.channel === "tg" ? "tg" : "vk"}/${b.name}`, b]));
  }

  /** Mounts `/tg/` and `/vk/` (those with a pushed bot) on the HTTP server. */
  mount(): void {
    for (const prefix of new Set([...this.byPath.keys()].map((p) => p.slice(0, 4)))) {
      this.o.http.route("*", prefix, (req, res, url) => this.serve(req, res, url));
      this.mounted.push(prefix);
    }
  }

  /** Stops the record-only workers, then unmounts the paths (a restart of the bots mounts them again). */
  async close(): Promise<void> {
    await Promise.all([...this.recorders.values()].map((r) => r.then((w) => w.stop()).catch(() => undefined)));
    for (const prefix of this.mounted) this.o.http.unroute(prefix);
    this.mounted.length = 0;
  }

  /** One request under a mounted prefix: the owner's worker serves it, else a record-only one. */
  private async serve(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
    const bot = this.byPath.get(decodeURIComponent(url.pathname));
    if (!bot) return void res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("no such bot here\n");
    let worker: ChannelWorker;
    try {
      worker = this.o.owned(bot.name) ?? (await this.recorderFor(bot));
    } catch (error) {
      this.o.logging.forBot(bot.name).error({ err: error }, "cannot take pushed updates now (channel unreachable); answered 503, the sender retries");
      return void res.writeHead(503, { "content-type": "text/plain; charset=utf-8" }).end("unavailable\n");
    }
    await worker.handleHttp!(req, res);
  }

  /** The bot's record-only worker, built once (again after a failed build). */
  private recorderFor(bot: BotConfig): Promise<ChannelWorker> {
    let r = this.recorders.get(bot.name);
    if (!r) {
      r = this.o.createRecorder(bot);
      r.catch(() => this.recorders.delete(bot.name));
      this.recorders.set(bot.name, r);
    }
    return r;
  }
}
