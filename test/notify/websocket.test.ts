import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { describe, test } from "node:test";
import { WebSocketServer } from "ws";
import { dialects } from "../support/db.js";
import { eventually, Harness, TOKEN } from "../support/harness.js";
import { userSays, waitForBotMessages } from "../support/telegram.js";
import { freePort } from "../support/telegram.js";

async function wsServer(port = 0) {
  const wss = new WebSocketServer({ port, host: "127.0.0.1" });
  await new Promise((r) => wss.once("listening", r));
  const events: Array<Record<string, unknown>> = [];
  const auth: Array<string | undefined> = [];
  wss.on("connection", (socket, req) => {
    auth.push(req.headers.authorization);
    socket.on("message", (data) => events.push(JSON.parse(String(data)) as Record<string, unknown>));
  });
  return {
    wss,
    events,
    auth,
    port: (wss.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => r());
      }),
  };
}

for (const dialect of dialects()) {
  describe(`websocket notifier (${dialect})`, () => {
    test("each settled answer is sent as a reply event with the bearer token", async () => {
      const ws = await wsServer();
      const h = await Harness.start({ dialect, extraYaml: `websocket: { url: "ws://127.0.0.1:${ws.port}/events", token: ws-secret-token }` });
      try {
        await userSays(h.telegram, TOKEN, 1101, "hi");
        await waitForBotMessages(h.telegram, 1101, 1);
        await eventually(() => ws.events.length === 1, 5000, "event");
        const rows = await h.messages();
        const e = ws.events[0]!;
        assert.deepEqual(Object.keys(e).sort(), ["at", "bot", "in_reply_to", "message_id", "thread_key", "type"]);
        assert.equal(e.type, "reply");
        assert.equal(e.bot, "shop-tg");
        assert.equal(e.in_reply_to, Number(rows[0]!.id));
        assert.equal(e.message_id, Number(rows[1]!.id));
        assert.equal(e.thread_key, "tg:1101");
        assert.ok(!Number.isNaN(Date.parse(String(e.at))));
        assert.equal(ws.auth[0], "Bearer ws-secret-token");
      } finally {
        await h.stop();
        await ws.close();
      }
    });

    test("a dead websocket server changes nothing for users; events flow once it is back", async () => {
      const port = await freePort();
      const h = await Harness.start({ dialect, extraYaml: `websocket: { url: "ws://127.0.0.1:${port}/events" }` });
      try {
        for (let i = 0; i < 3; i++) await userSays(h.telegram, TOKEN, 1201 + i, `q${i}`);
        for (let i = 0; i < 3; i++) assert.equal((await waitForBotMessages(h.telegram, 1201 + i, 1))[0]!.text, `echo: q${i}`);
        const ws = await wsServer(port);
        try {
          await eventually(() => ws.events.length === 3, 15_000, "queued events delivered after reconnect");
          assert.deepEqual(ws.events.map((e) => e.thread_key).sort(), ["tg:1201", "tg:1202", "tg:1203"]);
        } finally {
          await ws.close();
        }
      } finally {
        await h.stop();
      }
    });
  });
}
