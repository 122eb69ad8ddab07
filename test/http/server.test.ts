import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { HttpServer, parseHttpPort, sendJson } from "../../src/http/server.js";
import { checkPortClash } from "../../src/ops/serve.js";
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

  test("--http-port: a port, 0 for any free one, off for none; anything else is refused", () => {
    assert.equal(parseHttpPort("8080"), 8080);
    assert.equal(parseHttpPort("0"), 0);
    assert.equal(parseHttpPort("off"), null);
    for (const bad of ["", "-1", "65536", "80a", "http"]) assert.throws(() => parseHttpPort(bad), RangeError, bad);
  });

  test("a port that a bot's VK callback or Telegram webhook listens on is refused, naming the bot", () => {
    const vk = { name: "club-vk", channel: "vk", vk: { mode: "callback", callback: { port: 8080 } } } as unknown as BotConfig;
    const tg = { name: "shop-tg", channel: "tg", tg: { mode: "webhook", webhook: { port: 8443 } } } as unknown as BotConfig;
    assert.throws(() => checkPortClash([vk, tg], 8080), /--http-port 8080 is also the listening port of bot club-vk/);
    assert.throws(() => checkPortClash([vk, tg], 8443), /bot shop-tg/);
    assert.doesNotThrow(() => checkPortClash([vk, tg], 9464));
    assert.doesNotThrow(() => checkPortClash([vk, tg], 0));
  });
});
