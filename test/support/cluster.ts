import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { runBots } from "./cli.js";
import { BotApiCluster, startConflictProxy } from "./conflict-proxy.js";
import { eventually } from "./harness.js";
import { Scenario, type Child, type ScenarioBot } from "./scenario.js";
import { userSays } from "./telegram.js";

/** Waits `ms` milliseconds. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Instance ids of a three-instance cluster. */
export const THREE = ["i1", "i2", "i3"];

/** Placement check for {@link Cluster.settled}: every instance counted owns the same share (6 bots over 3 → 2 each). */
export const fairShare = (counts: Map<string, number>): boolean => new Set(counts.values()).size === 1;

/** Credits on the default account of a cluster scenario (5 per reply). */
export const CLUSTER_BALANCE = 10_000;

/** Statuses an incoming message does not leave by itself (docs/architecture.md): it will never be answered. */
const FINAL_UNANSWERED: string[] = ["filtered", "no_balance", "failed", "skipped", "expired", "unconfirmed"];

/** `bots status --json` as far as scale-out tests read it (src/core/ownership.ts ScaleStatus). */
export interface ClusterStatus {
  instances: Array<{ id: string; alive: boolean; heartbeat_age_ms: number; bots_owned: string[] }>;
  owners: Array<{ bot: string; owner: string | null; epoch: number }>;
}

/** One `bots start` instance of a cluster: its id, process and Bot API proxy. */
export interface ClusterInstance {
  id: string;
  child: Child;
  proxyUrl: string;
}

/** A private chat with one bot: the user (= chat) id and the texts the user sent, in order. */
export interface ClusterChat {
  bot: ScenarioBot;
  chat: number;
  said: string[];
}

/**
 * Several `bin/bots.js start` instances of one {@link Scenario} (its bots, database and model),
 * each behind its own Bot API proxy from {@link startConflictProxy} (409 Conflict to a second
 * poller of a token, Telegram's offsets), passed as `TG_API_ROOT` in the child's environment.
 * Chats are private chats with distinct user ids per bot.
 */
export class Cluster {
  readonly api: BotApiCluster;
  readonly instances = new Map<string, ClusterInstance>();
  readonly chats: ClusterChat[];

  /**
   * @param ttlS `--lease-ttl` of every instance, seconds
   * @param chatsPerBot private chats per bot that {@link say} rounds write to
   */
  constructor(
    readonly s: Scenario,
    readonly ttlS: number,
    chatsPerBot: number,
  ) {
    this.api = new BotApiCluster(s.telegram.config.apiURL);
    this.chats = s.bots.flatMap((bot, b) => Array.from({ length: chatsPerBot }, (_, k) => ({ bot, chat: 10_000 * (b + 1) + k + 1, said: [] })));
  }

  /** A scenario with `bots` Telegram bots and a cluster over it; register `s` for `close()` in the test's `after`. */
  static async create(dialect: "sqlite" | "mysql", o: { bots?: number; chatsPerBot?: number; ttlS?: number; latencyMs?: number } = {}): Promise<Cluster> {
    const s = await Scenario.create(dialect, { bots: o.bots ?? 6, concurrency: 4, balance: CLUSTER_BALANCE });
    s.llm.latencyMs = o.latencyMs ?? 30;
    return new Cluster(s, o.ttlS ?? 2, o.chatsPerBot ?? 2);
  }

  /**
   * Starts instance `id` (`bots start tg --instance-id id --lease-ttl ttlS --http-port 0`) behind a
   * new proxy; `env` is added to the child's environment (e.g. a `DATABASE_URL` through a TCP
   * proxy); `proxyOpts` go to its proxy. Resolves once it prints its banner (after its first
   * placement round).
   *
   * The proxy keeps idle connections 60 s, as a Bot API server keeps them well past the pauses
   * of these tests. With Node's 5 s a send may go out on a connection in the instant the server
   * closes it (the client's agent lets it go 1 s before the server's `Keep-Alive: timeout=5`, but
   * a process starved of CPU reads that late): the request is written and fails, correctly
   * `unconfirmed`, a network race these tests are not about (test/faults/ambiguous-send.test.ts
   * cuts a send after it was written).
   */
  async start(id: string, env: Record<string, string> = {}, proxyOpts: Parameters<typeof startConflictProxy>[2] = {}): Promise<ClusterInstance> {
    const proxy = await startConflictProxy(this.api, id, { keepAliveMs: 60_000, ...proxyOpts });
    this.s.closers.push(proxy.stop);
    const child = await this.s.start(["--instance-id", id, "--lease-ttl", String(this.ttlS)], { TG_API_ROOT: proxy.url, ...env });
    const inst = { id, child, proxyUrl: proxy.url };
    // BOTS_TEST_KEEP_LOGS=DIR keeps each instance's console log (stderr) for a post-mortem.
    const keep = process.env.BOTS_TEST_KEEP_LOGS;
    if (keep) this.s.closers.push(async () => writeFileSync(path.join(keep, `${path.basename(this.s.fx.root)}-${id}.log`), child.out.stderr));
    this.instances.set(id, inst);
    return inst;
  }

  /** `bots status --json`. */
  async status(): Promise<ClusterStatus> {
    const r = await runBots(["status", "--json"], { cwd: this.s.fx.root });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as ClusterStatus;
  }

  /** Bots each instance owns (names sorted), from `bots status --json`. */
  async ownedPerInstance(): Promise<Map<string, string[]>> {
    return new Map((await this.status()).instances.map((i) => [i.id, [...i.bots_owned].sort()]));
  }

  /** Owner of each bot by name (null when none), read from `bot_owners` (faster than a `bots status` process). */
  async owners(): Promise<Map<string, { owner: string | null; epoch: number }>> {
    return new Map((await this.s.store.owners.owners()).map((o) => [o.bot, { owner: o.owner, epoch: o.epoch }]));
  }

  /**
   * Waits until every instance of `live` heartbeats (its row younger than the TTL: it reached the
   * database again, after an outage or a pause), every bot is owned by one of them and `check`
   * holds for the owner counts, and then nothing changes for one TTL (reads every third of it, so
   * a placement round of each instance has passed); returns the owners then.
   * @throws Error when that does not happen within `timeoutMs`
   */
  async settled(live: string[], check: (counts: Map<string, number>) => boolean = () => true, timeoutMs = 20_000): Promise<Map<string, string>> {
    let last = "";
    await eventually(
      async () => {
        const beats = new Map((await this.s.store.owners.instances()).map((i) => [i.id, i.age_ms]));
        return live.every((id) => (beats.get(id) ?? Infinity) < this.ttlS * 1000);
      },
      timeoutMs,
      `heartbeats of ${live.join(", ")}`,
    );
    const read = async () => {
      const o = await this.owners();
      last = JSON.stringify([...o]);
      if (this.s.bots.some((b) => !live.includes(o.get(b.name)?.owner ?? ""))) return undefined;
      const counts = new Map(live.map((i) => [i, 0]));
      for (const b of this.s.bots) counts.set(o.get(b.name)!.owner!, counts.get(o.get(b.name)!.owner!)! + 1);
      return check(counts) ? JSON.stringify([...o]) : undefined;
    };
    const owners = await eventually(
      async () => {
        const first = await read();
        if (!first) return undefined;
        for (let i = 0; i < 3; i++) {
          await sleep((this.ttlS * 1000) / 3);
          if ((await read()) !== first) return undefined;
        }
        return new Map([...(await this.owners())].map(([bot, o]) => [bot, o.owner!]));
      },
      timeoutMs,
      `owners settled on ${live.join(", ")}`,
    ).catch(async (error: Error) => {
      await this.dump();
      throw new Error(
        `${error.message}; owners last read: ${last}${this.s.db.dialect === "sqlite" ? `; SQLite write lock ${this.s.sqliteWritable() ? "free" : "held (a paused process inside a write?)"}` : ""}`,
      );
    });
    return owners!;
  }

  /** One round of load: every chat says `<label> c<chat> m<n>` (chats in parallel, each in order). */
  async say(label: string, n: number): Promise<void> {
    await Promise.all(this.chats.map((c) => this.sayIn(c, `${label} c${c.chat} m${n}`)));
  }

  /** The user of `chat` says `text` (recorded in `chat.said` once the emulator has it). */
  async sayIn(chat: ClusterChat, text: string): Promise<void> {
    await userSays(this.s.telegram, chat.bot.token, chat.chat, text);
    chat.said.push(text);
  }

  /** Texts the bot sent to a chat, in order (the emulator's store, whichever instance sent them). */
  answers(c: ClusterChat): string[] {
    return this.s.telegram.storage.botMessages
      .filter((m) => m.botToken === c.bot.token && Number(m.message.chat_id) === c.chat)
      .map((m) => String(m.message.text));
  }

  /**
   * With `BOTS_TEST_DUMP=DIR` set: keeps each instance's log and the incoming rows under
   * `DIR/<ms>/`, for a failing check (what an assertion message cannot hold).
   */
  async dump(): Promise<void> {
    if (!process.env.BOTS_TEST_DUMP) return;
    const dir = path.join(process.env.BOTS_TEST_DUMP, String(Date.now()));
    mkdirSync(dir, { recursive: true });
    for (const [id, inst] of this.instances) writeFileSync(path.join(dir, `${id}.log`), inst.child.out.stderr);
    writeFileSync(path.join(dir, "rows.json"), JSON.stringify(await this.s.incoming().catch((e: Error) => e.message), null, 1));
  }

  /**
   * Waits until every chat has as many answers as messages, then (after a pause for late
   * duplicates) asserts each chat got exactly `echo: <text>` for every text, once, in order, and
   * every incoming row is `answered`.
   */
  async assertAnsweredOnceInOrder(timeoutMs = 30_000): Promise<void> {
    try {
      // A row in a final state other than `answered` will never be answered: stop waiting and report.
      const stuck = async () => (await this.s.incoming()).some((r) => FINAL_UNANSWERED.includes(r.status));
      await eventually(
        async () => this.chats.every((c) => this.answers(c).length >= c.said.length) || (await stuck()),
        timeoutMs,
        "every message answered",
      ).catch(async (error: Error) => {
        const missing = this.chats
          .filter((c) => this.answers(c).length < c.said.length)
          .map((c) => `${c.bot.name} chat ${c.chat}: ${this.answers(c).length}/${c.said.length}`);
        const rows = (await this.s.incoming()).filter((r) => r.status !== "answered").map((r) => `${r.bot} ${r.text} ${r.status}`);
        throw new Error(`${error.message}; unanswered chats: ${missing.join("; ")}; rows not answered: ${rows.join("; ") || "none"}`);
      });
      const finalRows = async () =>
        (await this.s.incoming())
          .filter((r) => FINAL_UNANSWERED.includes(r.status))
          .map((r) => `${r.bot} '${r.text}' ${r.status}${r.error ? ` (${r.error})` : ""}`);
      // An instance resumed after a pause may still be recording what it sent before it: a
      // take-over made such a row `unconfirmed`, and the sender's settle makes it `answered`.
      await eventually(async () => (await finalRows()).length === 0, 10_000, "no message ends unanswered").catch(() => {});
      assert.deepEqual(await finalRows(), [], "no message ends unanswered");
      await new Promise((r) => setTimeout(r, 500));
      for (const c of this.chats)
        assert.deepEqual(
          this.answers(c),
          c.said.map((t) => `echo: ${t}`),
          `${c.bot.name} chat ${c.chat}: every message answered once, in order`,
        );
      const rows = await this.s.incoming();
      assert.equal(
        rows.length,
        this.chats.reduce((a, c) => a + c.said.length, 0),
        "one incoming row per message",
      );
      assert.deepEqual(
        rows.filter((r) => r.status !== "answered").map((r) => [r.id, r.status]),
        [],
        "every incoming row is answered",
      );
    } catch (error) {
      await this.dump();
      throw error;
    }
  }

  /**
   * Messages whose net ledger movements (reserve, refunds) differ from what their row says was
   * charged (`cost` when answered, else 0), as `bot 'text' status: net N, cost C (reasons)`;
   * empty when every reply is charged exactly once.
   */
  async chargeMismatches(): Promise<string[]> {
    const ledger = await this.s.store.database.db
      .selectFrom("balance_ledger")
      .select(["message_id", "delta", "reason"])
      .where("message_id", "is not", null)
      .execute();
    const byMessage = new Map<number, { net: number; reasons: string[] }>();
    for (const l of ledger) {
      const m = byMessage.get(Number(l.message_id)) ?? { net: 0, reasons: [] };
      m.net -= Number(l.delta);
      m.reasons.push(`${l.reason} ${Number(l.delta)}`);
      byMessage.set(Number(l.message_id), m);
    }
    const out: string[] = [];
    for (const r of await this.s.incoming()) {
      const m = byMessage.get(r.id) ?? { net: 0, reasons: [] };
      const cost = r.status === "answered" || r.status === "unconfirmed" ? (r.cost ?? 0) : 0;
      if (m.net !== cost) out.push(`${r.bot} '${r.text}' ${r.status}: net ${m.net}, cost ${cost} (${m.reasons.join(", ")})`);
    }
    return out;
  }

  /**
   * Bots instance `id` runs now according to its own log (stderr): `owning B` / `took over B`
   * add, `lost ownership of B` / `handing B over` remove.
   */
  runsPerLog(id: string): Set<string> {
    const runs = new Set<string>();
    for (const line of this.instances.get(id)!.child.out.stderr.split("\n")) {
      const add = /(?:owning|took over) (\S+)/.exec(line);
      const drop = /(?:lost ownership of|handing) (\S+?):? /.exec(line);
      if (add && !/starting an owned bot failed/.test(line)) runs.add(add[1]!);
      if (drop) runs.delete(drop[1]!);
    }
    return runs;
  }

  /** Instances (of `ids`) whose proxy carried a `sendMessage` of `bot` at or after `since` (local ms). */
  sendersOf(bot: ScenarioBot, since: number): string[] {
    return [...new Set(this.api.sent.filter((m) => m.token === bot.token && m.at >= since).map((m) => m.instance))].sort();
  }
}
