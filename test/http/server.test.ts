import assert from "node:assert/strict";
import net from "node:net";
import { describe, test } from "node:test";
import pino from "pino";
import { HttpServer, parseHttpPort, sendJson } from "../../src/http/server.js";
import { checkIngress } from "../../src/ops/serve.js";
import type { BotConfig } from "../../src/config/schema.js";

describe("HttpServer", () => {
  test("routes exact paths and prefixes (longest first), 404 for unknown paths, 405 for another method", async () => {
    const server = new HttpServer();
    server.route("GET", "/healthz", (_req, res) => sendJson(res, 200, { ok: true }));
    server.route("POST", "/tg/", (_req, res, url) => void res.writeHead(200).end(`any bot: ${url.pathname}`));
    server.route("POST", "/tg/shop-tg", (_req, res) => void res.writeHead(200).end("shop-tg"));
    server.route("GET", "/boom", () => {
      throw new Error("handler bug");
    });
    assert.throws(() => server.route("GET", "/healthz", () => undefined), /mounted twice/);
    const port = await server.listen({ port: 0 });
    assert.ok(port > 0);
    try {
      const get = (p: string, method = "GET") => fetch(`http://127.0.0.1:${port}${p}`, { method });
      assert.deepEqual(await (await get("/healthz")).json(), { ok: true });
      assert.equal(await (await get("/tg/shop-tg", "POST")).text(), "shop-tg");
      assert.equal(await (await get("/tg/other", "POST")).text(), "any bot: /tg/other");
      assert.equal((await get("/nope")).status, 404);
      assert.equal((await get("/healthz", "POST")).status, 405);
      assert.equal((await get("/boom")).status, 500);
      // A second server on the same port fails with EADDRINUSE.
      await assert.rejects(new HttpServer().listen({ port }), /EADDRINUSE/);
    } finally {
      await server.close();
    }
  });

  test("a malformed percent-escape or a target that is no URL gets 400 with a one-line warning, not a handler's 500", async () => {
    const lines: Array<{ level: string; msg: string; err?: unknown }> = [];
    const logger = pino({ level: "debug", formatters: { level: (label) => ({ level: label }) } }, { write: (l: string) => void lines.push(JSON.parse(l)) });
    const server = new HttpServer(logger);
    // As the webhook ingress does: the bot's name is the decoded rest of the path.
    server.route("*", "/tg/", (_req, res, url) => void res.writeHead(200).end(decodeURIComponent(url.pathname)));
    const port = await server.listen({ port: 0 });
    try {
      for (const p of ["/%E0%A4%A", "/tg/%E0%A4%A", "/tg/%zz"]) {
        const r = await fetch(`http://127.0.0.1:${port}${p}`, { method: "POST" });
        assert.equal(r.status, 400, p);
        assert.equal(await r.text(), "bad request\n");
      }
      // An absolute-form target that no URL parser takes ("http://[").
      const raw = await new Promise<string>((resolve, reject) => {
        let got = "";
        const sock = net.connect(port, "127.0.0.1", () => sock.write("GET http://[ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
        sock.on("data", (d) => (got += d.toString()));
        sock.on("end", () => resolve(got));
        sock.on("error", reject);
      });
      assert.match(raw, /^HTTP\/1\.1 400 /);
      assert.equal(await (await fetch(`http://127.0.0.1:${port}/tg/%D0%B1%D0%BE%D1%82`, { method: "POST" })).text(), "/tg/бот", "a good escape still works");
      assert.deepEqual(
        lines.map((l) => [l.level, l.msg]),
        Array(4).fill(["warn", "malformed request target; 400"]),
      );
      assert.ok(
        lines.every((l) => l.err === undefined),
        "no error, no stack",
      );
    } finally {
      await server.close();
    }
  });

  test("--http-port: a port, 0 for any free one, off for none; anything else is refused", () => {
    assert.equal(parseHttpPort("8080"), 8080);
    assert.equal(parseHttpPort("0"), 0);
    assert.equal(parseHttpPort("off"), null);
    for (const bad of ["", "-1", "65536", "80a", "http"]) assert.throws(() => parseHttpPort(bad), RangeError, bad);
  });

  test("--http-port off is refused while a bot receives webhooks or callbacks, naming the bot; polling bots do not need it", () => {
    const vk = { name: "club-vk", channel: "vk", vk: { mode: "callback" } } as unknown as BotConfig;
    const tg = { name: "shop-tg", channel: "tg", tg: { mode: "webhook" } } as unknown as BotConfig;
    const poll = { name: "poll-tg", channel: "tg", tg: { mode: "polling" } } as unknown as BotConfig;
    assert.throws(() => checkIngress([vk, tg], null), /--http-port off, but club-vk, shop-tg receive updates on the HTTP server/);
    assert.doesNotThrow(() => checkIngress([vk, tg], { port: 8080, host: "127.0.0.1", thresholdMs: 1 }));
    assert.doesNotThrow(() => checkIngress([poll], null));
  });
});
