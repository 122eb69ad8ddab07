import assert from "node:assert/strict";
import type http from "node:http";
import { after, before, describe, test } from "node:test";
import nodeFetch from "node-fetch";
import { modelFetch } from "../../src/llm/fetch.js";
import { closeServer, listenLocal, originOf } from "../support/http.js";

/** What the server saw of one request. */
interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

describe("modelFetch: the model API's fetch (node-fetch for JSON, the global fetch for the rest)", () => {
  const seen: Seen[] = [];
  let server: http.Server;
  let root: string;
  const f = modelFetch(nodeFetch);
  before(async () => {
    server = await listenLocal(async (req, res) => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
      if (req.url === "/events") {
        // Server-sent events: one now, the rest never (the client aborts).
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write('data: {"n":1}\n\n');
        return;
      }
      if (req.url === "/moved") return void res.writeHead(307, { location: "/json" }).end();
      res
        .writeHead(429, { "content-type": "application/json", "retry-after-ms": "250", "x-request-id": "req_1" })
        .end(JSON.stringify({ echo: seen.at(-1)!.body }));
    });
    root = originOf(server);
  });
  after(() => closeServer(server));

  test("a JSON request: method, headers from a Headers object, body; status, headers and JSON back; redirects followed", async () => {
    seen.length = 0;
    const headers = new Headers({ authorization: "Bearer sk-test", "content-type": "application/json" });
    const res = await f(`${root}/moved`, { method: "POST", headers, body: '{"model":"m"}' });
    assert.equal(res.status, 429);
    assert.equal(res.ok, false);
    assert.equal(res.headers.get("retry-after-ms"), "250");
    assert.equal(res.headers.get("x-request-id"), "req_1");
    assert.deepEqual(await res.json(), { echo: '{"model":"m"}' });
    assert.deepEqual(
      seen.map((s) => [s.method, s.url, s.headers.authorization, s.headers["content-type"]]),
      [
        ["POST", "/moved", "Bearer sk-test", "application/json"],
        ["POST", "/json", "Bearer sk-test", "application/json"],
      ],
    );
    // node-fetch's own header: the request went through node-fetch, not the global fetch.
    assert.equal(seen[0]!.headers["accept-encoding"], "gzip,deflate");
  });

  test("a multipart body (an audio upload) goes through the global fetch, as multipart", async () => {
    seen.length = 0;
    const form = new FormData();
    form.append("model", "whisper-1");
    form.append("file", new Blob([Buffer.from("OggS")], { type: "audio/ogg" }), "voice.ogg");
    const res = await f(`${root}/upload`, { method: "POST", body: form });
    assert.equal(res.status, 429);
    assert.match(String(seen[0]!.headers["content-type"]), /^multipart\/form-data; boundary=/);
    assert.match(seen[0]!.body, /name="model"\r\n\r\nwhisper-1/);
    assert.match(seen[0]!.body, /filename="voice.ogg"/);
  });

  test("the body is an async iterable of bytes, and an abort ends it with an AbortError", async () => {
    const ac = new AbortController();
    const res = await f(`${root}/events`, { method: "POST", body: "{}", signal: ac.signal });
    const body = res.body as unknown as AsyncIterable<Uint8Array>;
    const it = body[Symbol.asyncIterator]();
    const first = await it.next();
    assert.ok(first.value instanceof Uint8Array);
    assert.equal(Buffer.from(first.value).toString("utf8"), 'data: {"n":1}\n\n');
    const pending = it.next();
    ac.abort();
    await assert.rejects(pending, { name: "AbortError" });
  });

  test("a refused connection rejects with the socket's code; an aborted signal before the call rejects at once", async () => {
    const closed = await listenLocal(() => undefined);
    const url = originOf(closed);
    await closeServer(closed);
    await assert.rejects(f(`${url}/v1/chat/completions`, { method: "POST", body: "{}" }), { code: "ECONNREFUSED" });
    await assert.rejects(f(`${root}/json`, { method: "POST", body: "{}", signal: AbortSignal.abort() }), { name: "AbortError" });
  });
});
