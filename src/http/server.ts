import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";

/**
 * A request handler mounted on the {@link HttpServer}. It owns the response: it must end it
 * (or let the promise reject, which answers 500).
 */
export type RouteHandler = (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => void | Promise<void>;

/** One mounted route: an exact path, or a prefix ending in `/` (`/tg/` matches `/tg/shop-tg`). */
interface Route {
  method: string | "*";
  path: string;
  prefix: boolean;
  handler: RouteHandler;
}

/** Options of {@link HttpServer.listen}. */
export interface ListenOptions {
  /** TCP port; 0 picks a free one (tests). */
  port: number;
  /** Interface to bind. @defaultValue "127.0.0.1" */
  host?: string;
}

/**
 * The one HTTP server of a `bots start` process (README, "Metrics and health"): `/metrics`, `/healthz`, `/readyz`, and
 * later Telegram webhooks (`/tg/<bot>`) and VK callbacks (`/vk/<bot>`). Other code mounts
 * handlers with {@link route} before or after {@link listen}; the longest matching path wins.
 * Unknown paths get 404, a known path with another method 405, a malformed target 400.
 */
export class HttpServer {
  private readonly routes: Route[] = [];
  private server?: http.Server;

  constructor(private readonly logger?: Logger) {}

  /**
   * Mounts a handler.
   * @param method `GET`, `POST`... or `*` for any
   * @param path exact path (`/metrics`) or a prefix ending with `/` (`/tg/`)
   * @throws Error when the same method and path are mounted twice
   */
  route(method: string, path: string, handler: RouteHandler): this {
    const m = method.toUpperCase();
    if (this.routes.some((r) => r.path === path && (r.method === m || r.method === "*" || m === "*")))
      throw new Error(`HTTP route ${m} ${path} is mounted twice`);
    this.routes.push({ method: m, path, prefix: path.endsWith("/"), handler });
    // Longest path first, so `/tg/shop` beats `/tg/`.
    this.routes.sort((a, b) => b.path.length - a.path.length);
    return this;
  }

  /** Removes what was mounted at `path` (any method); a restart of the bots mounts it again. */
  unroute(path: string): this {
    for (let i = this.routes.length - 1; i >= 0; i--) if (this.routes[i]!.path === path) this.routes.splice(i, 1);
    return this;
  }

  /**
   * Starts listening.
   * @returns the bound port (the chosen one when `port` is 0)
   * @throws Error with code `EADDRINUSE` when the port is taken
   */
  async listen(options: ListenOptions): Promise<number> {
    const server = http.createServer((req, res) => void this.dispatch(req, res));
    server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(options.port, options.host ?? "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.server = server;
    return this.port;
  }

  /** The bound port, 0 before {@link listen}. */
  get port(): number {
    const a = this.server?.address();
    return a && typeof a === "object" ? (a as AddressInfo).port : 0;
  }

  /** Stops accepting connections and closes idle ones; resolves when every connection is gone. */
  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
    });
  }

  private async dispatch(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    // A target that is no URL, or a path with a malformed percent-escape (`/%E0%A4%A`), is the
    // client's mistake: 400 and a one-line warning, never a handler's 500 with a stack. Handlers
    // may decode the path without a try.
    let url: URL;
    try {
      url = new URL(req.url ?? "/", "http://localhost");
      decodeURIComponent(url.pathname);
    } catch {
      this.logger?.warn({ method: req.method, target: (req.url ?? "").slice(0, 200) }, "malformed request target; 400");
      res.writeHead(400, { "content-type": "text/plain; charset=utf-8" }).end("bad request\n");
      return;
    }
    const matching = this.routes.filter((r) => (r.prefix ? url.pathname.startsWith(r.path) : url.pathname === r.path));
    const route = matching.find((r) => r.method === "*" || r.method === req.method || (r.method === "GET" && req.method === "HEAD"));
    if (!route) {
      const status = matching.length ? 405 : 404;
      res.writeHead(status, { "content-type": "text/plain; charset=utf-8" }).end(status === 404 ? "not found\n" : "method not allowed\n");
      return;
    }
    try {
      await route.handler(req, res, url);
    } catch (error) {
      this.logger?.error({ err: error, path: url.pathname }, "HTTP handler failed");
      if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain; charset=utf-8" }).end("error\n");
      else res.end();
    }
  }
}

/** Writes a JSON response. */
export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" }).end(`${JSON.stringify(body)}\n`);
}

/**
 * Parses `--http-port`: a port number 1–65535, `0` for any free port, or `off` for no server.
 * @returns the port, or null for `off`
 * @throws RangeError for anything else
 */
export function parseHttpPort(text: string): number | null {
  const t = text.trim().toLowerCase();
  if (t === "off" || t === "none" || t === "false") return null;
  if (!/^\d{1,5}$/.test(t) || Number(t) > 65535) throw new RangeError(`--http-port must be a port (1-65535), 0 for any free port, or off; got '${text}'`);
  return Number(t);
}

/**
 * Reads a request body up to `limit` bytes.
 * @returns the body, or null when it is larger than `limit` (the caller answers 413)
 */
export async function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > limit) return null;
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}
