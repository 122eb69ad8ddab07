/**
 * The handler every pushed channel shares (src/channels/ingress-http.ts), on a real HTTP server:
 * each refusal answers its status before anything is recorded, and only a positive result is
 * acknowledged.
 */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { describe, test } from "node:test";
import pino from "pino";
import { type PushedChannel, servePushed } from "../../src/channels/ingress-http.js";

interface Ping {
  id: number;
  kind: string;
}

/** A server whose every request goes through {@link servePushed} with `spec`; records what it received and logged. */
async function serve(overrides: Partial<PushedChannel<Ping>> = {}) {
  const received: Ping[] = [];
  const logs: Array<{ level: string; msg: string } & Record<string, unknown>> = [];
  const logger = pino({ level: "debug", formatters: { level: (label) => ({ level: label }) } }, { write: (l: string) => void logs.push(JSON.parse(l)) });
  const spec: PushedChannel<Ping> = {
    logger,
    maxBodyBytes: 64,
    parse: (json) => (typeof (json as Ping | null)?.id === "number" ? (json as Ping) : undefined),
    notAnUpdate: "not a ping",
    receive: async (p) => {
      received.push(p);
      return true;
    },
    describe: (p) => ({ ping_id: p.id }),
    notRecorded: "ping not recorded",
    unavailableBody: "unavailable",
    ...overrides,
  };
  const server = http.createServer((req, res) => void servePushed(req, res, spec));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/x`;
  const post = async (body: string, init: RequestInit = {}) => {
    const r = await fetch(url, { method: "POST", body, ...init });
    return { status: r.status, body: await r.text(), type: r.headers.get("content-type"), retryAfter: r.headers.get("retry-after") };
  };
  return { url, post, received, logs, close: () => new Promise<void>((r) => server.close(() => r())) };
}

describe("shared handler of pushed updates", () => {
  test("a positive result is answered 200 ok, text/plain", async () => {
    const s = await serve();
    try {
      assert.deepEqual(await s.post(JSON.stringify({ id: 1, kind: "a" })), { status: 200, body: "ok", type: "text/plain; charset=utf-8", retryAfter: null });
      assert.deepEqual(s.received, [{ id: 1, kind: "a" }]);
    } finally {
      await s.close();
    }
  });

  test("another method is 405, a body over the cap 413, no JSON or no update 400 (logged with its size): nothing is received", async () => {
    const s = await serve();
    try {
      const get = await fetch(s.url);
      assert.deepEqual([get.status, await get.text()], [405, "method not allowed"]);
      assert.deepEqual(await s.post(JSON.stringify({ id: 1, kind: "x".repeat(80) })), {
        status: 413,
        body: "too large",
        type: "text/plain; charset=utf-8",
        retryAfter: null,
      });
      assert.equal((await s.post("{not json")).status, 400);
      assert.equal((await s.post("null")).status, 400);
      assert.deepEqual(await s.post(JSON.stringify({ kind: "no id" })), {
        status: 400,
        body: "bad request",
        type: "text/plain; charset=utf-8",
        retryAfter: null,
      });
      assert.deepEqual(s.received, []);
      assert.deepEqual(
        s.logs.filter((l) => l.msg === "not a ping").map((l) => [l.level, l.bytes]),
        [
          ["warn", 9],
          ["warn", 4],
          ["warn", 16],
        ],
      );
    } finally {
      await s.close();
    }
  });

  test("authorize refuses with 403 before the body is read; screen's answer ends the request before it is received", async () => {
    let parsed = 0;
    const s = await serve({
      authorize: (req) => req.headers["x-secret"] === "right",
      parse: (json) => (parsed++, json as Ping),
      screen: (p) => (p.kind === "confirm" ? { status: 200, body: "c0nfirm" } : p.kind === "other" ? { status: 403, body: "forbidden" } : undefined),
    });
    try {
      // Over the cap too: without the secret the body is never read, so the refusal is 403, not 413.
      assert.equal((await s.post(JSON.stringify({ id: 1, kind: "x".repeat(80) }))).status, 403);
      assert.equal((await s.post(JSON.stringify({ id: 1, kind: "a" }), { headers: { "x-secret": "wrong" } })).status, 403);
      assert.equal(parsed, 0, "nothing parsed for a refused request");
      const ok = { headers: { "x-secret": "right" } };
      assert.deepEqual(await s.post(JSON.stringify({ id: 2, kind: "confirm" }), ok), {
        status: 200,
        body: "c0nfirm",
        type: "text/plain; charset=utf-8",
        retryAfter: null,
      });
      assert.equal((await s.post(JSON.stringify({ id: 3, kind: "other" }), ok)).status, 403);
      assert.equal(s.received.length, 0, "a screened update is not received");
      assert.equal((await s.post(JSON.stringify({ id: 4, kind: "a" }), ok)).status, 200);
      assert.deepEqual(
        s.received.map((p) => p.id),
        [4],
      );
    } finally {
      await s.close();
    }
  });

  test("a result that does not acknowledge, or anything thrown, is 503 with Retry-After: 5; a throw is logged naming the update", async () => {
    let outcome: "throw" | "no" = "throw";
    const s = await serve({
      receive: async () => {
        if (outcome === "throw") throw new Error("database away");
        return false;
      },
    });
    try {
      assert.deepEqual(await s.post(JSON.stringify({ id: 7, kind: "a" })), {
        status: 503,
        body: "unavailable",
        type: "text/plain; charset=utf-8",
        retryAfter: "5",
      });
      outcome = "no";
      assert.deepEqual(await s.post(JSON.stringify({ id: 8, kind: "a" })), {
        status: 503,
        body: "unavailable",
        type: "text/plain; charset=utf-8",
        retryAfter: "5",
      });
      const errors = s.logs.filter((l) => l.level === "error");
      assert.deepEqual(
        errors.map((l) => [l.msg, l.ping_id, (l.err as { message?: string } | undefined)?.message]),
        [["ping not recorded", 7, "database away"]],
      );
    } finally {
      await s.close();
    }
  });
});
