import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { describe, test } from "node:test";
import { GatedHttpAgent, gatedSend } from "../../src/channels/write-gate.js";
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

/** One POST through `agent`; a non-2xx answer rejects with its `status` (as the channels' errors carry it). */
function post(agent: http.Agent, url: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: "POST", agent, headers: { "content-type": "text/plain" } }, (res) => {
      res.resume();
      res.on("end", () => (res.statusCode === 200 ? resolve(200) : reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode }))));
    });
    req.on("error", reject);
    req.end(body);
  });
}

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

  test("connection refused (nothing written) is retried and each attempt is unmarked; 503 likewise; 400 is final", async () => {
    const srv = await server(() => "ok");
    const closedPort = await freePort();
    const agent = new GatedHttpAgent({ keepAlive: true });
    try {
      const r = recorder();
      let attempt = 0;
      const call = () => post(agent, attempt++ === 0 ? `http://127.0.0.1:${closedPort}/send` : srv.url, "hello");
      assert.equal(await gatedSend({ method: "send", call, classify: () => ({ retry: true }), progress: r.progress, retries: 3, baseMs: 1 }), 200);
      assert.deepEqual(r.log, ["mark 0", "unmark 0", "mark 0"]);
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
