import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import type { TelegramServer } from "telegram-test-api/lib/telegramServer.js";
import { ensureBuilt, finished, runBots, spawnBots } from "../support/cli.js";
import { createTestDatabase, dialects, type TestDatabase } from "../support/db.js";
import { Fixture } from "../support/fixture.js";
import { eventually, TOKEN } from "../support/harness.js";
import { FakeOpenAI } from "../support/openai-server.js";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.js";
import { startTelegram, userSays, waitForBotMessages } from "../support/telegram.js";
import { mountTmpfs } from "../support/tmpfs.js";

type Failing = Array<{ component?: string; bot?: string; channel?: string; reason: string | null }>;

async function get(
  port: number,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string; json: () => Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { headers });
  const body = await res.text();
  return { status: res.status, body, json: () => JSON.parse(body) as Record<string, unknown> };
}

/** The value of one sample line `name{labels} value` in a Prometheus exposition. */
function sample(text: string, line: RegExp): number | undefined {
  for (const l of text.split("\n")) if (line.test(l)) return Number(l.split(" ").pop());
  return undefined;
}

/** Waits until `path` answers `status` and returns its JSON body. */
async function waitFor(
  port: number,
  path: string,
  status: number,
  what: string,
  timeoutMs = 40_000,
  headers: Record<string, string> = {},
): Promise<Record<string, unknown>> {
  return (await eventually(
    async () => {
      const r = await get(port, path, headers);
      return r.status === status ? r.json() : undefined;
    },
    timeoutMs,
    what,
  ))!;
}

/** Shared local servers: a Bot API and a model. */
let telegram: TelegramServer;
let apiRoot: string;
const llm = new FakeOpenAI();
before(async () => {
  await ensureBuilt();
  ({ server: telegram, apiRoot } = await startTelegram());
  await llm.start();
});
after(async () => {
  await telegram.stop();
  await llm.stop();
});

/** A config dir with one polling Telegram bot answering from the local model. */
function fixture(bot = "shop-tg"): Fixture {
  const fx = new Fixture();
  fx.tgBot(bot, { llmUrl: llm.url, apiRoot, extra: ["balance: { cost_per_reply: 0 }"] });
  return fx;
}

/** The environment of a `bots` process of {@link fixture} on `dbUrl`. */
function envFor(dbUrl: string, extra: Record<string, string> = {}): Record<string, string> {
  return { OPENAI_API_KEY: "sk-health-secret-777", TG_TOKEN: TOKEN, DATABASE_URL: dbUrl, ...extra };
}

/** Runs `fn` with {@link fixture} and a fresh SQLite database; both thrown away afterwards. */
async function withSqliteFixture(fn: (fx: Fixture, dbUrl: string) => Promise<void>): Promise<void> {
  const fx = fixture();
  const db = await createTestDatabase("sqlite");
  try {
    await fn(fx, db.url);
  } finally {
    await db.drop();
    fx.cleanup();
  }
}

/** Starts `bots start` on the fixture and waits for its HTTP port and /readyz 200. */
async function startInstance(fx: Fixture, dbUrl: string, args: string[] = [], env: Record<string, string> = {}) {
  const child = spawnBots(["start", "--http-port", "0", ...args], { cwd: fx.root, env: envFor(dbUrl, env) });
  const port = Number(await eventually(() => /HTTP on 127\.0\.0\.1:(\d+)/.exec(child.out.stderr)?.[1], 20_000, "HTTP port line"));
  await waitFor(port, "/readyz", 200, "ready", 20_000);
  return { child, port };
}

async function stopInstance(child: ReturnType<typeof spawnBots>): Promise<void> {
  child.kill("SIGTERM");
  const res = await finished(child, 30_000);
  assert.equal(res.code, 0, res.stderr.slice(-3000));
}

/** The `database` entry of a `failing` list. */
function databaseItem(body: Record<string, unknown>) {
  return (body.failing as Failing).find((f) => f.component === "database");
}

for (const dialect of dialects().filter((d) => d === "mysql")) {
  describe(`health while ${dialect} is cut off (TCP proxy)`, () => {
    let db: TestDatabase;
    let proxy: TcpProxy;
    let url: string;
    before(async () => {
      db = await createTestDatabase(dialect);
      const u = new URL(db.url);
      proxy = await startTcpProxy(u.hostname, Number(u.port || 3306));
      u.host = `127.0.0.1:${proxy.port}`;
      url = u.toString();
    });
    after(async () => {
      await proxy.close();
      await db.drop();
    });

    test("idle (no message, heartbeat every 20 min): the probe write turns /healthz and /readyz 503 naming database, and 200 again once it is back", async () => {
      const fx = fixture();
      // --lease-ttl 3600: the ownership heartbeat runs every 20 min, so only the health probe writes.
      const { child, port } = await startInstance(fx, url, ["--lease-ttl", "3600"]);
      try {
        assert.equal((await get(port, "/healthz")).status, 200);
        proxy.cut();
        const down = await waitFor(port, "/healthz", 503, "healthz 503 while cut");
        assert.equal(down.status, "failing");
        assert.match(
          databaseItem(down)!.reason!,
          /^(write failed|cannot connect) \((ECONNREFUSED|ECONNRESET|PROTOCOL_CONNECTION_LOST|EPIPE)\): /,
          JSON.stringify(down),
        );
        assert.equal((down.database as { up: boolean }).up, false);
        const notReady = await waitFor(port, "/readyz", 503, "readyz 503 while cut");
        assert.equal(notReady.status, "not_ready");
        assert.ok(databaseItem(notReady), JSON.stringify(notReady));
        const m = (await get(port, "/metrics")).body;
        assert.equal(sample(m, /^bots_database_up /), 0);
        assert.ok(
          m.split("\n").some((l) => /^bots_storage_errors_total\{code="[A-Z_]+"\} [1-9]/.test(l)),
          "storage errors counted by code",
        );
        proxy.restore();
        const up = await waitFor(port, "/healthz", 200, "healthz 200 after restore");
        assert.deepEqual(up.failing, []);
        assert.equal((up.database as { up: boolean }).up, true);
        assert.equal((await get(port, "/readyz")).status, 200);
        assert.equal(sample((await get(port, "/metrics")).body, /^bots_database_up /), 1);
        await stopInstance(child);
      } finally {
        proxy.restore();
        child.kill("SIGKILL");
        fx.cleanup();
      }
    });

    test("cut past the lease: the instance drops its bot; /healthz names database, /readyz names database and the bot nobody runs; both 200 after restore and the bot answers", async () => {
      const fx = fixture();
      const { child, port } = await startInstance(fx, url, ["--lease-ttl", "2"]);
      try {
        proxy.cut();
        await eventually(() => child.out.stderr.includes("lost ownership of shop-tg"), 30_000, "bot dropped past the lease");
        const health = await waitFor(port, "/healthz", 503, "healthz 503");
        assert.ok(databaseItem(health), JSON.stringify(health));
        assert.deepEqual(health.bots, [], "no bot runs here any more");
        const ready = await waitFor(port, "/readyz", 503, "readyz 503");
        assert.ok(databaseItem(ready));
        assert.ok(
          (ready.failing as Failing).some((f) => f.bot === "shop-tg" && f.channel === "tg" && /no live instance/.test(f.reason!)),
          JSON.stringify(ready),
        );
        proxy.restore();
        await waitFor(port, "/readyz", 200, "readyz 200 after restore (bot taken up again)");
        // The bot taken up again is recovered and started before it counts as receiving.
        const healthy = await waitFor(port, "/healthz", 200, "healthz 200 after restore");
        assert.deepEqual(
          (healthy.bots as Array<{ bot: string }>).map((b) => b.bot),
          ["shop-tg"],
        );
        await userSays(telegram, TOKEN, 7101, "after the outage");
        assert.equal((await waitForBotMessages(telegram, 7101, 1, 20_000))[0]!.text.length > 0, true);
        await stopInstance(child);
      } finally {
        proxy.restore();
        child.kill("SIGKILL");
        fx.cleanup();
      }
    });
  });
}

describe("health while the SQLite file system is full (tmpfs)", () => {
  test("writes fail with SQLITE_FULL: /healthz and /readyz 503 naming database, 200 again once space is freed", async () => {
    const fs = mountTmpfs(4);
    const fx = fixture();
    let child: ReturnType<typeof spawnBots> | undefined;
    try {
      const started = await startInstance(fx, `sqlite:${path.join(fs.dir, "bots.db")}`);
      child = started.child;
      const port = started.port;
      assert.equal((await get(port, "/healthz")).status, 200);
      fs.fill();
      // A message to record, and the heartbeat/probe: every write now needs space that is gone.
      await userSays(telegram, TOKEN, 7201, "disk full");
      const down = await waitFor(port, "/healthz", 503, "healthz 503 on a full disk");
      assert.match(databaseItem(down)!.reason!, /^write failed \(SQLITE_FULL\): database or disk is full/, JSON.stringify(down));
      assert.ok(databaseItem(await waitFor(port, "/readyz", 503, "readyz 503 on a full disk")));
      assert.match((await get(port, "/metrics")).body, /^bots_storage_errors_total\{code="SQLITE_FULL"\} [1-9]/m);
      fs.free();
      await waitFor(port, "/healthz", 200, "healthz 200 once space is freed");
      await waitFor(port, "/readyz", 200, "readyz 200 once space is freed");
      await stopInstance(child);
    } finally {
      child?.kill("SIGKILL");
      if (child && child.exitCode === null && child.signalCode === null) await finished(child, 10_000);
      fs.unmount();
      fx.cleanup();
    }
  });
});

describe("--metrics-token", () => {
  const token = "metrics-token-0123456789abcdef";
  test("/metrics needs the bearer token (401 without or wrong, 200 with); /healthz and /readyz give only the status without it; the token is in no log line", () =>
    withSqliteFixture(async (fx, dbUrl) => {
      const { child, port } = await startInstance(fx, dbUrl, [], { BOTS_METRICS_TOKEN: token });
      try {
        const auth = { authorization: `Bearer ${token}` };
        const none = await get(port, "/metrics");
        assert.equal(none.status, 401);
        assert.ok(!none.body.includes("bots_"), "nothing of the metrics without the token");
        assert.equal((await get(port, "/metrics", { authorization: `Bearer ${token.slice(0, -1)}x` })).status, 401);
        assert.equal((await get(port, "/metrics", { authorization: token })).status, 401, "not a Bearer header");
        const ok = await get(port, "/metrics", auth);
        assert.equal(ok.status, 200);
        assert.match(ok.body, /^bots_database_up 1$/m);

        const bare = await get(port, "/healthz");
        assert.equal(bare.status, 200);
        assert.deepEqual(bare.json(), { status: "ok" });
        const full = await get(port, "/healthz", auth);
        assert.equal(full.status, 200);
        assert.equal((full.json().bots as Array<{ bot: string }>)[0]!.bot, "shop-tg");
        assert.equal((full.json().database as { up: boolean }).up, true);
        assert.deepEqual((await get(port, "/readyz")).json(), { status: "ready" });
        assert.deepEqual((await get(port, "/readyz", auth)).json().bots, ["shop-tg"]);

        await stopInstance(child);
        const logs = readFileSync(path.join(fx.root, "logs", "bots.log"), "utf8");
        assert.match(logs, /"metrics_token":"set"/);
        assert.ok(!logs.includes(token) && !child.out.stderr.includes(token) && !child.out.stdout.includes(token), "token in no log line or output");
      } finally {
        child.kill("SIGKILL");
      }
    }));

  test("a token given on the command line is accepted too; a short one is refused (exit 2)", () =>
    withSqliteFixture(async (fx, dbUrl) => {
      const { child, port } = await startInstance(fx, dbUrl, ["--metrics-token", token]);
      try {
        assert.equal((await get(port, "/metrics")).status, 401);
        assert.equal((await get(port, "/metrics", { authorization: `bearer ${token}` })).status, 200);
        await stopInstance(child);
      } finally {
        child.kill("SIGKILL");
      }
      const short = await runBots(["start", "--http-port", "0", "--metrics-token", "short"], { cwd: fx.root, env: envFor(dbUrl) });
      assert.equal(short.code, 2);
      assert.match(short.stderr, /at least 16 characters/);
    }));

  test("binding beyond loopback without a token warns on stderr and in the log; with one it does not", () =>
    withSqliteFixture(async (fx, dbUrl) => {
      // 192.0.2.1 (TEST-NET-1) is on no interface: the bind fails after the warning, so nothing listens beyond loopback.
      const open = await runBots(["start", "--http-port", "0", "--http-host", "192.0.2.1"], { cwd: fx.root, env: envFor(dbUrl) });
      assert.equal(open.code, 2, open.stderr);
      assert.match(open.stderr, /beyond loopback without a token/);
      assert.match(readFileSync(path.join(fx.root, "logs", "bots.log"), "utf8"), /"level":"warn".*beyond loopback without a token/);
      const guarded = await runBots(["start", "--http-port", "0", "--http-host", "192.0.2.1"], {
        cwd: fx.root,
        env: envFor(dbUrl, { BOTS_METRICS_TOKEN: token }),
      });
      assert.equal(guarded.code, 2);
      assert.doesNotMatch(guarded.stderr, /beyond loopback/);
    }));
});

describe("readyz of a standby", () => {
  test("a second instance on the same SQLite file owns nothing while the first runs its bot: ready, not failing", () =>
    withSqliteFixture(async (fx, dbUrl) => {
      const first = await startInstance(fx, dbUrl);
      try {
        const second = await startInstance(fx, dbUrl);
        try {
          assert.deepEqual((await get(second.port, "/readyz")).json(), { status: "ready", bots: [] });
          assert.equal((await get(second.port, "/healthz")).status, 200);
          await stopInstance(second.child);
        } finally {
          second.child.kill("SIGKILL");
        }
        await stopInstance(first.child);
      } finally {
        first.child.kill("SIGKILL");
      }
    }));
});
