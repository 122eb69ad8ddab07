import assert from "node:assert/strict";
import path from "node:path";
import SQLite from "better-sqlite3";
import type { TelegramServer } from "telegram-test-api/lib/telegramServer.js";
import { openStore, type Store } from "../../src/storage/index.js";
import { ensureBuilt, finished, spawnBots } from "./cli.js";
import { BotApiCluster } from "./conflict-proxy.js";
import { createTestDatabase, type TestDatabase } from "./db.js";
import { Fixture } from "./fixture.js";
import { eventually } from "./harness.js";
import { FakeOpenAI } from "./openai-server.js";
import { openReservations, type Child } from "./scenario.js";
import { startTcpProxy, type TcpProxy } from "./tcp-proxy.js";
import { startTelegram } from "./telegram.js";
import { mountTmpfs, type Tmpfs } from "./tmpfs.js";

/**
 * Telegram's getUpdates offsets over the emulator ({@link BotApiCluster}), remembering the
 * highest offset each token passed: every update below it counts as acknowledged by the bot
 * (Bot API getUpdates: "confirmed as soon as getUpdates is called with an offset higher than its update_id").
 */
export class OffsetRecorder extends BotApiCluster {
  readonly maxOffset = new Map<string, number>();

  override getUpdates(token: string, offset: number) {
    this.maxOffset.set(token, Math.max(this.maxOffset.get(token) ?? 0, offset));
    return super.getUpdates(token, offset);
  }
}

/** The answer of one HTTP GET of the ops endpoints. */
export interface Probe {
  status: number;
  body: string;
}

/**
 * The database of a fault test, reachable by the `bots` processes through a fault the test
 * controls, and directly by the test:
 * - MariaDB/MySQL: a {@link startTcpProxy} in front of the server; `down()` cuts it (open
 *   connections dropped, new ones refused), `up()` restores it;
 * - SQLite: the file on a small {@link mountTmpfs} tmpfs; `down()` truncates the WAL (so every
 *   write must grow a file) and fills the file system (SQLITE_FULL for every write, reads still
 *   work), `up()` deletes the filler.
 * The test's own {@link store} reads through the fault-free path; it must not write between
 * `down()` and `up()`.
 */
export class FaultyDatabase {
  store!: Store;
  /** `DATABASE_URL` for the processes (through the fault). */
  processUrl = "";
  private db?: TestDatabase;
  private proxy?: TcpProxy;
  private tmpfs?: Tmpfs;
  private file = "";

  static async create(dialect: "sqlite" | "mysql"): Promise<FaultyDatabase> {
    const d = new FaultyDatabase();
    if (dialect === "mysql") {
      d.db = await createTestDatabase("mysql");
      const u = new URL(d.db.url);
      d.proxy = await startTcpProxy(u.hostname, Number(u.port || 3306));
      u.host = `127.0.0.1:${d.proxy.port}`;
      d.processUrl = u.toString();
      d.store = await openStore(d.db.url);
    } else {
      d.tmpfs = mountTmpfs(32);
      d.file = path.join(d.tmpfs.dir, "bots.db");
      d.processUrl = `sqlite:${d.file}`;
      d.store = await openStore(d.processUrl);
    }
    return d;
  }

  get dialect(): "sqlite" | "mysql" {
    return this.tmpfs ? "sqlite" : "mysql";
  }

  /** Starts the fault: every write of the processes fails from now on (see the class). */
  async down(): Promise<void> {
    if (this.proxy) return this.proxy.cut();
    // A WAL file keeps its size after a checkpoint and is written over again: with free room in
    // it, writes would still succeed on a full disk. Truncate it first (retried while busy).
    await eventually(
      () => {
        const conn = new SQLite(this.file, { timeout: 200 });
        try {
          const [r] = conn.pragma("wal_checkpoint(TRUNCATE)") as Array<{ busy: number }>;
          return r!.busy === 0;
        } finally {
          conn.close();
        }
      },
      10_000,
      "WAL truncated",
    );
    this.tmpfs!.fill();
  }

  /** Ends the fault. */
  up(): void {
    if (this.proxy) this.proxy.restore();
    else this.tmpfs!.free();
  }

  async close(): Promise<void> {
    this.up();
    await this.store?.close();
    await this.proxy?.close();
    await this.db?.drop();
    this.tmpfs?.unmount();
  }
}

/** LLM and spam lines of every fault-test bot: the local model, several messages per chat allowed. */
export function modelYaml(llm: FakeOpenAI, extra: string[] = []): string[] {
  return [
    "llm:",
    "  model: m",
    "  api_key: ${OPENAI_API_KEY}",
    `  base_url: ${llm.url}`,
    "  concurrency: 4",
    "  timeout_s: 20",
    ...extra,
    "spam: { max_per_minute: 100, duplicate_window_s: 0 }",
  ];
}

/**
 * One fault test's world: a project folder, the local model, the Bot API emulator, a
 * {@link FaultyDatabase}, and `bin/bots.js` processes run against them. Bots are written by the
 * test (`fx.bot`); variables for `.env` are collected in {@link env} and written by {@link start}.
 */
export class FaultBed {
  fx = new Fixture();
  llm = new FakeOpenAI();
  telegram!: TelegramServer;
  db!: FaultyDatabase;
  children: Child[] = [];
  /** `.env` of the project, beside OPENAI_API_KEY and DATABASE_URL. */
  env: Record<string, string> = {};
  /** Run by {@link close} after the children are gone (proxies, fake APIs). */
  closers: Array<() => Promise<void>> = [];

  static async create(dialect: "sqlite" | "mysql", balanceCredits = 1000): Promise<FaultBed> {
    await ensureBuilt();
    const b = new FaultBed();
    b.telegram = (await startTelegram()).server;
    await b.llm.start();
    b.db = await FaultyDatabase.create(dialect);
    b.fx.write("prompts/p.md", "Be brief.");
    await b.db.store.balance.topUp("default", balanceCredits * 100);
    return b;
  }

  get store(): Store {
    return this.db.store;
  }

  /** Writes `.env` and runs `bots ARGS` (e.g. `start --http-port 0`) as a process; `ready` says when its start is done. */
  spawn(args: string[]): Child {
    this.fx.write(
      ".env",
      Object.entries({ OPENAI_API_KEY: "sk-test-key-123456", DATABASE_URL: this.db.processUrl, ...this.env })
        .map(([k, v]) => `${k}=${v}\n`)
        .join(""),
    );
    const child = spawnBots(args, { cwd: this.fx.root });
    this.children.push(child);
    return child;
  }

  /** `bots start --http-port 0 --lease-ttl 3`; resolves with the HTTP port once every bot runs. */
  async start(): Promise<{ child: Child; port: number }> {
    const child = this.spawn(["start", "--http-port", "0", "--lease-ttl", "3"]);
    await eventually(() => child.out.stderr.includes("Press Ctrl-C to stop.") || child.exitCode !== null, 30_000, "start banner");
    assert.equal(child.exitCode, null, child.out.stderr);
    const port = Number(/HTTP on [\d.]+:(\d+)/.exec(child.out.stderr)![1]);
    return { child, port };
  }

  /** GET `/healthz` or `/readyz` of a running process. */
  async probe(port: number, which: "healthz" | "readyz"): Promise<Probe> {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/${which}`, { signal: AbortSignal.timeout(5000) });
      return { status: r.status, body: await r.text() };
    } catch (error) {
      return { status: 0, body: String(error) };
    }
  }

  /** Incoming rows of one bot, oldest first. */
  async incoming(bot?: string) {
    let q = this.store.database.db.selectFrom("messages").selectAll().where("direction", "=", "in");
    if (bot) q = q.where("bot", "=", bot);
    return (await q.orderBy("id").execute()).map((r) => ({ ...r, id: Number(r.id), cost: r.cost === null ? null : Number(r.cost) }));
  }

  /** Reservations never refunded whose message is not answered (or unconfirmed): money held for nothing. */
  openReservations(): Promise<number> {
    return openReservations(this.store);
  }

  /** Ledger sum − balance (0 when the books agree). */
  async ledgerGap(): Promise<number> {
    const balance = (await this.store.balance.get("default"))!.balance;
    return (await this.store.balance.ledgerSum("default")) - balance;
  }

  async close(): Promise<void> {
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    await Promise.all(this.children.map((c) => (c.exitCode === null && c.signalCode === null ? finished(c, 5000) : undefined)));
    for (const c of this.closers) await c().catch(() => undefined);
    await this.telegram?.stop();
    await this.llm.stop();
    await this.db?.close();
    this.fx.cleanup();
  }
}

/**
 * Collects failed checks instead of stopping at the first, so one run of a fault shows every
 * invariant it broke; {@link done} throws them all as one AssertionError.
 */
export class Checks {
  readonly failed: string[] = [];

  /** Runs one check (an assert call); a failure is kept with its label. */
  async check(label: string, fn: () => unknown): Promise<void> {
    try {
      await fn();
    } catch (error) {
      const e = error as Error & { actual?: unknown; expected?: unknown; generatedMessage?: boolean };
      const shown = (v: unknown) => (JSON.stringify(v) ?? String(v)).slice(0, 400);
      const note = e.generatedMessage === false ? `${e.message.split("\n")[0]} — ` : "";
      this.failed.push(`${label}: ${"actual" in e ? `${note}got ${shown(e.actual)}, want ${shown(e.expected)}` : e.message}`);
    }
  }

  done(): void {
    assert.deepEqual(this.failed, [], `${this.failed.length} invariant(s) broken:\n- ${this.failed.join("\n- ")}`);
  }
}

/** Waits `ms` milliseconds. */
export const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Like {@link finished}, also for a child that has already exited (its `exit` event is gone). */
export function ended(child: Child, timeoutMs = 60_000): ReturnType<typeof finished> {
  if (child.exitCode !== null || child.signalCode !== null)
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode, stdout: child.out.stdout, stderr: child.out.stderr });
  return finished(child, timeoutMs);
}

/**
 * The books of a bed, as checks: the ledger sums to the balance, no reservation is open, and the
 * credits spent since `before` (hundredths of a credit) equal the cost of what was recorded as
 * delivered — replies by their incoming row (`answered`, `unconfirmed`; the outgoing copy repeats
 * the cost), proactive messages by their outgoing row (`sent`, `unconfirmed`).
 */
export async function checkBooks(c: Checks, bed: FaultBed, before: number): Promise<void> {
  await c.check("ledger = balance", async () => assert.equal(await bed.ledgerGap(), 0));
  await c.check("no open reservation", async () => assert.equal(await bed.openReservations(), 0));
  await c.check("credits charged = the cost of what was recorded as delivered", async () => {
    const rows = await bed.store.database.db.selectFrom("messages").select(["status", "cost", "direction", "meta"]).execute();
    const proactive = (meta: string | null) => Boolean(meta && (JSON.parse(meta) as { proactive?: unknown }).proactive);
    const delivered = rows.filter((r) =>
      r.direction === "in" ? ["answered", "unconfirmed"].includes(r.status) : ["sent", "unconfirmed"].includes(r.status) && proactive(r.meta),
    );
    assert.equal(
      before - (await bed.store.balance.get("default"))!.balance,
      delivered.reduce((a, r) => a + Number(r.cost ?? 0), 0),
    );
  });
}
