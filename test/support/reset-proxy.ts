import http from "node:http";
import type { AddressInfo } from "node:net";

/**
 * What the proxy does with one request: forward it (undefined), reset after the API has read it,
 * hold it until a promise settles, or refuse it with an API error of its own (not forwarded).
 */
export type RequestFault = "reset-after-read" | { hold: Promise<void> } | { refuse: { status: number; body: unknown } } | undefined;

/** One request the proxy received: the path (with query) and the raw body. */
export interface ProxiedRequest {
  path: string;
  body: string;
}

/**
 * Reads one parameter of an API request body: JSON (Bot API calls through telegraf) or
 * form-encoded (VK API calls through vk-io).
 */
export function requestParam(body: string, name: string): string | undefined {
  try {
    const v = (JSON.parse(body) as Record<string, unknown>)[name];
    return v === undefined ? undefined : String(v);
  } catch {
    return new URLSearchParams(body).get(name) ?? undefined;
  }
}

/**
 * An HTTP proxy on 127.0.0.1 (port 0) in front of a channel API (the Bot API emulator, FakeVk),
 * for ambiguous-send tests. Every request is recorded; `decide` picks its fate:
 * - `"reset-after-read"`: the request is passed to the API, which reads and carries it out (the
 *   message is delivered), then the client's socket is destroyed without a reply — a connection
 *   reset after the request was read;
 * - `{hold}`: the request waits for the promise, then goes on;
 * - `{refuse}`: answered with that status and JSON body; the API never sees it;
 * - undefined: forwarded as is.
 */
export async function startResetProxy(
  target: string,
  decide: (req: ProxiedRequest) => RequestFault,
): Promise<{ url: string; requests: ProxiedRequest[]; stop(): Promise<void> }> {
  const requests: ProxiedRequest[] = [];
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks);
    const seen = { path: req.url ?? "/", body: raw.toString("utf8") };
    requests.push(seen);
    const fault = decide(seen);
    if (fault && typeof fault === "object" && "refuse" in fault)
      return void res.writeHead(fault.refuse.status, { "content-type": "application/json" }).end(JSON.stringify(fault.refuse.body));
    if (fault && typeof fault === "object") await fault.hold;
    try {
      const r = await fetch(target + seen.path, {
        method: req.method,
        headers: { "content-type": req.headers["content-type"] ?? "application/json" },
        body: req.method === "GET" || req.method === "HEAD" ? undefined : raw,
      });
      const answer = Buffer.from(await r.arrayBuffer());
      if (fault === "reset-after-read") return void req.socket.destroy();
      res.writeHead(r.status, { "content-type": r.headers.get("content-type") ?? "application/json" }).end(answer);
    } catch {
      // The API stopped under a call in flight (test teardown): answer as a gateway would.
      if (!res.headersSent && !res.destroyed) res.writeHead(502).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
