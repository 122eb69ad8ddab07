import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import net, { type AddressInfo } from "node:net";
import { describe, test } from "node:test";
import tls from "node:tls";
import { GatedHttpAgent, GatedHttpsAgent, gatedAgentFor, gatedSend } from "../../src/channels/write-gate.js";
import { UnconfirmedSendError } from "../../src/errors.js";
import type { SendProgress } from "../../src/core/types.js";
import { freePort } from "../support/telegram.js";

/** A local server that reads each request in full, then does what `next` says. */
async function server(next: () => "ok" | "drop" | "503" | "400"): Promise<{ url: string; bodies: string[]; close(): Promise<void> }> {
  const bodies: string[] = [];
  const s = http.createServer(async (req, res) => {
    let body = "";
    for await (const c of req) body += String(c);
    bodies.push(body);
    const what = next();
    if (what === "drop") return void req.socket.destroy();
    const status = what === "ok" ? 200 : Number(what);
    res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify({ ok: status === 200 }));
  });
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(s.address() as AddressInfo).port}/send`,
    bodies,
    close: () => new Promise<void>((r) => (s.closeAllConnections(), s.close(() => r()))),
  };
}

/**
 * One POST through `agent` (http or https by the URL); a non-2xx answer rejects with its `status`
 * (as the channels' errors carry it). `late`: the body's second half and the end come 20 ms later,
 * after the request has its socket (as node-fetch 3, which pipes the body in, ends vk-io's requests).
 */
function post(agent: http.Agent, url: string, body: string, opts: { signal?: AbortSignal; late?: boolean } = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const headers = { "content-type": "text/plain", "content-length": Buffer.byteLength(body) };
    const req = (url.startsWith("https:") ? https : http).request(url, { method: "POST", agent, headers, signal: opts.signal }, (res) => {
      res.resume();
      res.on("end", () => (res.statusCode === 200 ? resolve(200) : reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode }))));
    });
    req.on("error", reject);
    if (!opts.late) return void req.end(body);
    const half = Math.floor(body.length / 2);
    req.write(body.slice(0, half));
    setTimeout(() => req.end(body.slice(half)), 20);
  });
}

/** A self-signed certificate for 127.0.0.1 (test/fixtures/tls/README.md). */
const TLS_KEY = readFileSync(new URL("../fixtures/tls/localhost.key", import.meta.url));
const TLS_CERT = readFileSync(new URL("../fixtures/tls/localhost.crt", import.meta.url));

/**
 * A raw TCP (or TLS) server speaking just enough HTTP/1.1 (keep-alive, content-length bodies,
 * each request answered 200 "ok"): it counts connections (TLS: handshakes completed), every byte
 * of request that arrives, and the requests.
 */
async function rawServer(opts: { tls?: boolean; onConnection?: (socket: net.Socket, n: number) => void } = {}) {
  const seen = { connections: 0, bytes: 0, requests: 0 };
  const onSocket = (socket: net.Socket) => {
    seen.connections++;
    socket.on("error", () => {});
    opts.onConnection?.(socket, seen.connections);
    let buf = Buffer.alloc(0);
    socket.on("data", (d: Buffer) => {
      seen.bytes += d.length;
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        const length = Number(/content-length: *(\d+)/i.exec(buf.subarray(0, end).toString())?.[1] ?? 0);
        if (buf.length < end + 4 + length) return;
        buf = buf.subarray(end + 4 + length);
        seen.requests++;
        socket.write("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
      }
    });
  };
  const s = opts.tls ? tls.createServer({ key: TLS_KEY, cert: TLS_CERT }, onSocket) : net.createServer(onSocket);
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const sockets = new Set<net.Socket>();
  s.on("connection", (c: net.Socket) => (sockets.add(c), c.on("close", () => sockets.delete(c))));
  return {
    seen,
    url: `${opts.tls ? "https" : "http"}://127.0.0.1:${(s.address() as AddressInfo).port}/send`,
    close: () =>
      new Promise<void>((r) => {
        for (const c of sockets) c.destroy();
        s.close(() => r());
      }),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A progress that logs its calls, with a `delivering` flag like the row's status. */
function recorder(opts: { failMark?: Error } = {}) {
  const log: string[] = [];
  const state = { delivering: false };
  const progress: SendProgress = {
    fromPart: 0,
    beforeWrite: async (part) => {
      log.push(`mark ${part}`);
      if (opts.failMark) throw opts.failMark;
      state.delivering = true;
    },
    notWritten: async (part) => {
      log.push(`unmark ${part}`);
      state.delivering = false;
    },
    delivered: async () => undefined,
  };
  return { log, state, progress };
}

describe("write gate (gated agent + gatedSend) against real sockets", () => {
  test("the request is not written before the mark commits; a success is marked once", async () => {
    const srv = await server(() => "ok");
    const agent = new GatedHttpAgent({ keepAlive: true });
    try {
      let seenAtMark = -1;
      const r = recorder();
      r.progress.beforeWrite = async (part) => {
        // The server has not got the body when the mark is being written.
        await new Promise((res) => setTimeout(res, 50));
        seenAtMark = srv.bodies.length;
        r.log.push(`mark ${part}`);
      };
      const status = await gatedSend({
        method: "send",
        call: () => post(agent, srv.url, "hello"),
        classify: () => ({ retry: true }),
        progress: r.progress,
        retries: 3,
        baseMs: 1,
      });
      assert.equal(status, 200);
      assert.equal(seenAtMark, 0, "nothing reached the server before the mark");
      assert.deepEqual(r.log, ["mark 0"]);
      assert.deepEqual(srv.bodies, ["hello"]);
    } finally {
      agent.destroy();
      await srv.close();
    }
  });

  for (const [secure, late] of [
    [false, false],
    [false, true],
    [true, false],
    [true, true],
  ]) {
    test(`${secure ? "TLS: the handshake is done" : "the request has a connected socket"} while the mark is pending, and the server has received 0 bytes${late ? " (the request ended after it got its socket)" : ""}; a keep-alive socket is reused the same way`, async () => {
      const srv = await rawServer({ tls: secure });
      const agent = secure ? new GatedHttpsAgent({ keepAlive: true, ca: TLS_CERT }) : new GatedHttpAgent({ keepAlive: true });
      try {
        // At the start and at the end of each mark: whether the agent's socket was ready (connected;
        // TLS: handshake completed, as the client sees it), and the request bytes the server had.
        const atMark: { ready: boolean; bytes: number }[] = [];
        const ready = () => {
          const sockets = Object.values(agent.sockets).flat();
          const socket = sockets[0] as tls.TLSSocket | undefined;
          return sockets.length === 1 && !!socket && !socket.connecting && (!secure || /^TLS/.test(socket.getProtocol() ?? ""));
        };
        const r = recorder();
        r.progress.beforeWrite = async (part) => {
          atMark.push({ ready: ready(), bytes: srv.seen.bytes });
          // The mark takes a while (a slow commit); nothing may arrive meanwhile.
          await sleep(150);
          atMark.push({ ready: ready(), bytes: srv.seen.bytes });
          r.log.push(`mark ${part}`);
        };
        const send = () =>
          gatedSend({
            method: "send",
            call: () => post(agent, srv.url, "hello", { late }),
            classify: () => ({ retry: false }),
            progress: r.progress,
            retries: 0,
            baseMs: 1,
          });
        assert.equal(await send(), 200);
        const first = srv.seen.bytes;
        assert.ok(first > 0);
        assert.equal(await send(), 200);
        assert.deepEqual(
          atMark,
          [
            { ready: true, bytes: 0 },
            { ready: true, bytes: 0 },
            { ready: true, bytes: first },
            { ready: true, bytes: first },
          ],
          `${secure ? "handshake done" : "connected"} when the mark started, nothing written until it committed; the second send likewise`,
        );
        assert.equal(srv.seen.connections, 1, "the second send reused the connection");
        assert.deepEqual(r.log, ["mark 0", "mark 0"]);
        assert.equal(srv.seen.requests, 2);
      } finally {
        agent.destroy();
        await srv.close();
      }
    });
  }

  test("routed (gatedAgentFor, no async context): held until the mark commits, on the shared agent's keep-alive connection; a refused connection is known unwritten and retried", async () => {
    const srv = await rawServer();
    const agent = new GatedHttpAgent({ keepAlive: true });
    try {
      const atMark: number[] = [];
      const r = recorder();
      r.progress.beforeWrite = async (part) => {
        await sleep(100);
        atMark.push(srv.seen.bytes);
        r.log.push(`mark ${part}`);
      };
      const send = (url: string, retries = 0) =>
        gatedSend({
          method: "send",
          routed: true,
          call: (gate) => post(gatedAgentFor(gate, agent), url, "hello"),
          classify: () => ({ retry: false }),
          progress: r.progress,
          retries,
          baseMs: 1,
        });
      assert.equal(await send(srv.url), 200);
      const first = srv.seen.bytes;
      assert.equal(await send(srv.url), 200);
      assert.deepEqual(atMark, [0, first], "nothing written before each mark committed");
      assert.equal(srv.seen.connections, 1, "the second send reused the shared agent's connection");
      // A port nobody listens on: never connected, never marked; known unwritten, so retried (a
      // request the gate had not seen would have ended unconfirmed at once).
      const closed = `http://127.0.0.1:${await freePort()}/send`;
      r.log.length = 0;
      await assert.rejects(send(closed, 2), (e: Error) => !(e instanceof UnconfirmedSendError));
      assert.deepEqual(r.log, [], "a refused connection is never marked");
    } finally {
      agent.destroy();
      await srv.close();
    }
  });

  test("a connection lost while the mark is written: nothing was written, it is unmarked after the mark and retried on a new connection", async () => {
    // The first connection is closed by the server 50 ms after it is accepted, before the mark commits.
    const srv = await rawServer({ onConnection: (socket, n) => void (n === 1 && setTimeout(() => socket.destroy(), 50)) });
    const agent = new GatedHttpAgent({ keepAlive: true });
    try {
      const r = recorder();
      r.progress.beforeWrite = async (part) => {
        await sleep(200);
        r.log.push(`mark ${part}`);
      };
      assert.equal(
        await gatedSend({
          method: "send",
          call: () => post(agent, srv.url, "hello"),
          classify: () => ({ retry: false }),
          progress: r.progress,
          retries: 2,
          baseMs: 1,
        }),
        200,
      );
      assert.deepEqual(r.log, ["mark 0", "unmark 0", "mark 0"]);
      assert.equal(srv.seen.connections, 2);
      assert.equal(srv.seen.requests, 1, "sent once, on the second connection");
    } finally {
      agent.destroy();
      await srv.close();
    }
  });

  /**
   * A send whose mark takes 200 ms while `call` fails 50 ms in: what the progress saw, and the
   * request bytes the server got (read 100 ms after the send ended).
   */
  async function failsWhileMarking(
    call: (agent: http.Agent, url: string) => Promise<unknown>,
    error: RegExp | { name: string },
  ): Promise<{ log: string[]; bytes: number }> {
    const srv = await rawServer();
    const agent = new GatedHttpAgent({ keepAlive: true });
    try {
      const r = recorder();
      r.progress.beforeWrite = async (part) => {
        r.log.push(`mark ${part} started`);
        await sleep(200);
        r.log.push(`mark ${part} committed`);
      };
      await assert.rejects(
        gatedSend({ method: "send", call: () => call(agent, srv.url), classify: () => ({ retry: false }), progress: r.progress, retries: 0, baseMs: 1 }),
        error,
      );
      await sleep(100);
      return { log: r.log, bytes: srv.seen.bytes };
    } finally {
      agent.destroy();
      await srv.close();
    }
  }

  test("a request aborted while its mark is in flight: nothing reaches the server, unmarked once the mark has settled", async () => {
    // Aborted (as the channels' request timeouts do) 50 ms in, while the mark is written.
    const r = await failsWhileMarking((agent, url) => post(agent, url, "hello", { signal: AbortSignal.timeout(50) }), { name: "AbortError" });
    assert.deepEqual(r.log, ["mark 0 started", "mark 0 committed", "unmark 0"]);
    assert.equal(r.bytes, 0);
  });

  test("a call that gives up while its mark is in flight (its request left alive): the request never goes out, unmarked once the mark has settled", async () => {
    const r = await failsWhileMarking((agent, url) => {
      post(agent, url, "hello").catch(() => undefined);
      return sleep(50).then(() => Promise.reject(new Error("gave up")));
    }, /gave up/);
    assert.deepEqual(r.log, ["mark 0 started", "mark 0 committed", "unmark 0"]);
    assert.equal(r.bytes, 0, "the request given up on was not written after its mark");
  });

  test("a connection dropped after the server read the request: one request, no retry, UnconfirmedSendError, the mark stays", async () => {
    const srv = await server(() => "drop");
    const agent = new GatedHttpAgent({ keepAlive: true });
    try {
      const r = recorder();
      await assert.rejects(
        gatedSend({
          method: "send",
          call: () => post(agent, srv.url, "hello"),
          classify: () => ({ retry: true }),
          progress: r.progress,
          retries: 4,
          baseMs: 1,
        }),
        UnconfirmedSendError,
      );
      assert.equal(srv.bodies.length, 1, "sent once");
      assert.deepEqual(r.log, ["mark 0"]);
      assert.equal(r.state.delivering, true, "left delivering: it may have arrived");
    } finally {
      agent.destroy();
      await srv.close();
    }
  });

  test("connection refused (never connected, so never marked) is retried; 503 is unmarked and retried; 400 is final", async () => {
    const srv = await server(() => "ok");
    const closedPort = await freePort();
    const agent = new GatedHttpAgent({ keepAlive: true });
    try {
      const r = recorder();
      let attempt = 0;
      const call = () => post(agent, attempt++ === 0 ? `http://127.0.0.1:${closedPort}/send` : srv.url, "hello");
      assert.equal(await gatedSend({ method: "send", call, classify: () => ({ retry: true }), progress: r.progress, retries: 3, baseMs: 1 }), 200);
      assert.equal(attempt, 2, "retried");
      // The refused attempt ran no mark (the gate marks once the socket is connected), so no unmark either.
      assert.deepEqual(r.log, ["mark 0"]);
      assert.deepEqual(srv.bodies, ["hello"]);

      let n = 0;
      const flaky = await server(() => (n++ === 0 ? "503" : "ok"));
      const r2 = recorder();
      assert.equal(
        await gatedSend({
          method: "send",
          call: () => post(agent, flaky.url, "hi"),
          classify: (e) => ({ retry: (e as { status: number }).status >= 500 }),
          progress: r2.progress,
          retries: 3,
          baseMs: 1,
        }),
        200,
      );
      assert.deepEqual(r2.log, ["mark 0", "unmark 0", "mark 0"]);
      assert.equal(flaky.bodies.length, 2);
      await flaky.close();

      const refusing = await server(() => "400");
      const r3 = recorder();
      await assert.rejects(
        gatedSend({
          method: "send",
          call: () => post(agent, refusing.url, "no"),
          classify: (e) => ({ retry: (e as { status: number }).status >= 500 }),
          progress: r3.progress,
          retries: 3,
          baseMs: 1,
        }),
        /HTTP 400/,
      );
      assert.deepEqual(r3.log, ["mark 0", "unmark 0"]);
      assert.equal(refusing.bodies.length, 1);
      await refusing.close();
    } finally {
      agent.destroy();
      await srv.close();
    }
  });

  test("a mark that fails cancels the request: nothing reaches the server, the mark's error is thrown", async () => {
    const srv = await server(() => "ok");
    const agent = new GatedHttpAgent({ keepAlive: true });
    try {
      const r = recorder({ failMark: new Error("database gone") });
      await assert.rejects(
        gatedSend({
          method: "send",
          call: () => post(agent, srv.url, "hello"),
          classify: () => ({ retry: true }),
          progress: r.progress,
          retries: 3,
          baseMs: 1,
        }),
        /database gone/,
      );
      await new Promise((res) => setTimeout(res, 50));
      assert.deepEqual(srv.bodies, []);
      assert.deepEqual(r.log, ["mark 0"], "not retried");
    } finally {
      agent.destroy();
      await srv.close();
    }
  });

  test("a request that did not go through a gated agent counts as unconfirmed on a network error (fails closed)", async () => {
    const srv = await server(() => "drop");
    const plain = new http.Agent({ keepAlive: false });
    try {
      const r = recorder();
      await assert.rejects(
        gatedSend({
          method: "send",
          call: () => post(plain, srv.url, "hello"),
          classify: () => ({ retry: true }),
          progress: r.progress,
          retries: 3,
          baseMs: 1,
        }),
        UnconfirmedSendError,
      );
      assert.equal(srv.bodies.length, 1);
    } finally {
      plain.destroy();
      await srv.close();
    }
  });
});
