import type { Logger } from "pino";
import type WebSocket from "ws";
import type { Notifier, ReplyEvent } from "../core/types.js";

/** Options of {@link WebSocketNotifier}. */
export interface WebSocketNotifierOptions {
  /** `ws://` or `wss://` URL. */
  url: string;
  /** Sent as `Authorization: Bearer <token>` when set. */
  token?: string;
  /** Events kept while disconnected; beyond it the oldest is dropped with a warning. @defaultValue 1000 */
  maxQueue?: number;
  /** First reconnect delay, ms; doubles up to `maxBackoffMs`. @defaultValue 500 */
  backoffMs?: number;
  /** @defaultValue 30000 */
  maxBackoffMs?: number;
  logger: Logger;
}

/**
 * Sends pipeline events as JSON text frames over one persistent websocket (ws). Connects on the
 * first event, reconnects with back-off, keeps a bounded queue while down. `notify` never throws
 * and never waits: a dead server changes nothing for users.
 */
export class WebSocketNotifier implements Notifier {
  private socket?: WebSocket;
  private connecting = false;
  private readonly queue: string[] = [];
  private backoff: number;
  private timer?: NodeJS.Timeout;
  private closed = false;
  private dropped = 0;

  constructor(private readonly options: WebSocketNotifierOptions) {
    this.backoff = options.backoffMs ?? 500;
  }

  /** Queues the event and sends it as soon as the connection allows. */
  notify(event: ReplyEvent): void {
    if (this.closed) return;
    const max = this.options.maxQueue ?? 1000;
    this.queue.push(JSON.stringify(event));
    while (this.queue.length > max) {
      this.queue.shift();
      this.dropped++;
      if (this.dropped === 1 || this.dropped % 100 === 0)
        this.options.logger.warn({ dropped: this.dropped, max_queue: max }, "websocket queue full: oldest events dropped");
    }
    this.flush();
  }

  /** Events waiting to be sent. */
  get pending(): number {
    return this.queue.length;
  }

  private flush(): void {
    const s = this.socket;
    if (s && s.readyState === 1) {
      while (this.queue.length) {
        const data = this.queue.shift()!;
        s.send(data, (err) => {
          if (err) {
            this.queue.unshift(data);
          }
        });
      }
      return;
    }
    void this.connect();
  }

  private async connect(): Promise<void> {
    if (this.connecting || this.closed || this.timer) return;
    if (this.socket && this.socket.readyState <= 1) return;
    this.connecting = true;
    try {
      const { default: WS } = await import("ws");
      const headers = this.options.token ? { Authorization: `Bearer ${this.options.token}` } : undefined;
      const socket = new WS(this.options.url, { headers, handshakeTimeout: 5000 });
      this.socket = socket;
      socket.on("open", () => {
        this.backoff = this.options.backoffMs ?? 500;
        this.options.logger.debug({ url: this.options.url }, "websocket connected");
        this.flush();
      });
      socket.on("error", (err) => this.options.logger.debug({ err: { message: err.message } }, "websocket error"));
      socket.on("close", () => {
        this.socket = undefined;
        if (!this.closed && this.queue.length) this.scheduleReconnect();
      });
      // Replies from the server are not part of the protocol; read and ignore them.
      socket.on("message", () => undefined);
    } catch (error) {
      this.options.logger.warn({ err: error }, "websocket connect failed");
      this.scheduleReconnect();
    } finally {
      this.connecting = false;
    }
  }

  private scheduleReconnect(): void {
    if (this.timer || this.closed) return;
    const wait = this.backoff;
    this.backoff = Math.min(this.options.maxBackoffMs ?? 30_000, this.backoff * 2);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.connect();
    }, wait);
    this.timer.unref();
  }

  /** Sends what is queued if connected (waits up to 1 s), then closes. */
  async close(): Promise<void> {
    if (this.socket?.readyState === 1 && this.queue.length) this.flush();
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    const s = this.socket;
    if (!s) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        s.terminate();
        resolve();
      }, 1000);
      s.once("close", () => {
        clearTimeout(t);
        resolve();
      });
      if (s.readyState === 1 || s.readyState === 0) s.close();
      else {
        clearTimeout(t);
        resolve();
      }
    });
  }
}
