import os from "node:os";
import type { Logger } from "pino";
import type { Store } from "../storage/index.js";
import type { InstanceRow, OwnerRow } from "../storage/owners.js";

/** Bots claimed and started at once in a placement round. */
const CLAIM_LANES = 8;

/** Default heartbeat age past which an instance is dead, ms (`--lease-ttl 15`). */
export const DEFAULT_LEASE_TTL_MS = 15_000;

/** Instances and owners as `bots status` shows them; ages on the database clock, ms. */
export interface ScaleStatus {
  instances: Array<{
    id: string;
    host: string;
    pid: number;
    started_ms: number;
    heartbeat_age_ms: number;
    lease_ttl_ms: number;
    alive: boolean;
    bots_owned: string[];
  }>;
  owners: Array<{ bot: string; owner: string | null; epoch: number }>;
}

/**
 * Reads instances and bot owners for `bots status`. `alive` judges each heartbeat against that
 * instance's own `--lease-ttl` (stored with it).
 */
export async function collectScale(store: Store): Promise<ScaleStatus> {
  const [instances, owners] = await Promise.all([store.owners.instances(), store.owners.owners()]);
  return {
    instances: instances.map((i) => ({
      id: i.id,
      host: i.host,
      pid: i.pid,
      started_ms: i.started_ms,
      heartbeat_age_ms: i.age_ms,
      lease_ttl_ms: i.ttl_ms,
      alive: i.age_ms < i.ttl_ms,
      bots_owned: owners.filter((o) => o.owner === i.id).map((o) => o.bot),
    })),
    owners: owners.map((o) => ({ bot: o.bot, owner: o.owner, epoch: o.epoch })),
  };
}

/** Options of {@link Ownership}. */
export interface OwnershipOptions {
  store: Store;
  /** This instance's id (`--instance-id`, or generated `host:pid:random`). */
  id: string;
  /** Bots this instance may own: its `bots start` selection minus bots pinned elsewhere. */
  bots: string[];
  logger: Logger;
  /** Heartbeat age past which an instance is dead, ms (`--lease-ttl`). @defaultValue 15000 */
  ttlMs?: number;
  /**
   * Whether bots move to instances that own fewer (one at a time). Off for the embedded SQLite
   * default, where a second `bots start` owns nothing until the first dies.
   * @defaultValue true
   */
  rebalance?: boolean;
  /** Host name stored in the instance row. @defaultValue os.hostname() */
  host?: string;
  /** Round interval, ms; 0 runs no timer (tests call {@link Ownership.tick}). @defaultValue ttlMs / 3 */
  intervalMs?: number;
  /**
   * Called once this instance owns a bot at `epoch`: recover it, then start its pollers. A throw
   * gives the bot back (another instance, or the next tick, tries again).
   */
  onAcquire(bot: string, epoch: number): Promise<void>;
  /**
   * Called when this instance no longer owns a bot (`reason` says why) or is about to hand it
   * over: stop its pollers and drain its pipeline. Must not throw.
   */
  onLose(bot: string, reason: string): Promise<void>;
  /**
   * Whether a bot stopped here still has answers finishing (being stored after a database
   * outage); its row is not given up meanwhile. @defaultValue never busy
   */
  busy?(bot: string): boolean;
}

/**
 * One instance's side of scale-out: registers the instance, keeps its heartbeat (database
 * clock), and every third of the TTL takes the bots it should own (unowned, or owned by a dead
 * instance, up to its fair share `ceil(bots / live instances)`), notices bots it lost (another
 * instance raised the epoch while this one was paused or cut off), and hands one bot at a time to
 * an instance that owns fewer.
 */
export class Ownership {
  private readonly owned = new Map<string, number>();
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = false;
  readonly ttlMs: number;
  private readonly host: string;

  constructor(private readonly o: OwnershipOptions) {
    this.ttlMs = o.ttlMs ?? DEFAULT_LEASE_TTL_MS;
    this.host = o.host ?? os.hostname();
  }

  /** The epoch at which this instance owns `bot`, or undefined when it does not (as of the last tick). */
  epochOf(bot: string): number | undefined {
    return this.owned.get(bot);
  }

  /** Whether this instance owns `bot` (as of the last tick); features use it to run schedules only on the owner. */
  owns(bot: string): boolean {
    return this.owned.has(bot);
  }

  /** Live instances other than this one, as of the last round. */
  get peers(): number {
    return this.livePeers;
  }
  private livePeers = 0;

  /** Bots owned now, with their epochs. */
  ownedBots(): ReadonlyMap<string, number> {
    return this.owned;
  }

  /** Owner of each bot and the live instances, as the last round read them (`/readyz`). */
  private view?: { owners: Map<string, string | null>; live: Set<string> };

  /**
   * Bots this instance may own (its selection minus bots pinned elsewhere) that no live instance
   * runs, as of the last round: neither this one (never taken, or stopped here after the lease
   * ran out) nor a live peer. A standby whose bots a live peer runs gets an empty list. Before the
   * first round: every bot not owned here.
   */
  unownedBots(): string[] {
    return this.o.bots.filter((bot) => {
      if (this.owned.has(bot)) return false;
      const owner = this.view?.owners.get(bot);
      return !(owner && owner !== this.o.id && this.view!.live.has(owner));
    });
  }

  /**
   * Writes the heartbeat now, outside the rounds: the cheap real write that `/healthz` probes the
   * database with when nothing else writes.
   * @throws driver errors when the database is unreachable
   */
  async probe(): Promise<void> {
    if (!this.stopped) await this.beat();
  }

  /**
   * Registers the instance, runs the first placement, and keeps ticking every `ttlMs / 3`.
   * @throws driver errors when the database is unreachable at start
   */
  async start(): Promise<void> {
    await this.o.store.owners.register(this.o.id, this.host, process.pid, this.o.bots, this.ttlMs);
    // Rows still naming this id are a previous life's (a restart with the same --instance-id).
    await this.o.store.owners.releaseAll(this.o.id);
    const every = this.o.intervalMs ?? Math.max(50, Math.floor(this.ttlMs / 3));
    // Not unref'd: an instance that owns nothing yet must stay up, waiting to take bots over.
    // A round may take long (a bot handed over drains for up to 10 s; the first round starts
    // every bot): the heartbeat goes on beside it, or the others would take this instance for
    // dead mid-round, and its first answers would wait for a fresh lease (Pipeline leaseFresh).
    if (every > 0) this.timer = setInterval(() => void (this.running ? this.beatAlone() : this.tick()), every);
    await this.tick();
  }

  private beating = false;

  /** A heartbeat while a long round runs; past the lease without one, the bots stop here. */
  private async beatAlone(): Promise<void> {
    if (this.beating || this.stopped) return;
    this.beating = true;
    try {
      await this.beat();
    } catch (error) {
      this.o.logger.warn({ err: error }, "heartbeat failed (database unreachable?)");
      this.demoteIfExpired();
    } finally {
      this.beating = false;
    }
  }

  /** Runs one placement round now (serialised with the timer's). */
  tick(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.running) return this.running;
    this.running = this.round()
      .catch((error) => {
        this.o.logger.warn({ err: error }, "ownership round failed (database unreachable?); owned bots are checked again next round");
        this.demoteIfExpired();
      })
      .finally(() => (this.running = undefined));
    return this.running;
  }

  /**
   * True while the last heartbeat that reached the database was sent less than two thirds of the
   * lease ago (local monotonic clock; a heartbeat goes every third). No other instance can take
   * this instance's bots over before the lease runs out, so an answer sent now gets recorded
   * under this owner's epoch. False while cut off from the database or paused.
   */
  leaseFresh(): boolean {
    return performance.now() - this.beatSentAt < (this.ttlMs * 2) / 3;
  }

  /** When the last heartbeat that reached the database was sent (local monotonic clock, ms). */
  private beatSentAt = performance.now();

  /**
   * Writes the heartbeat; the time it was sent counts as the last one that reached the database.
   * @returns false when the instance row was gone (register again)
   * @throws driver errors when the database is unreachable
   */
  private async beat(): Promise<boolean> {
    const sent = performance.now();
    const found = await this.o.store.owners.heartbeat(this.o.id);
    this.beatSentAt = sent;
    return found;
  }

  /**
   * Cut off from the database past the lease: other instances may own these bots by now, so
   * stop them here (their pollers would fight the new owner's). Nothing is released (the
   * database cannot be reached); when it comes back, the next round registers again and takes
   * bots as placement says. The stops run beside the heartbeat and the rounds, never inside
   * them: a stop drains, and an answer in the drain may wait for the next heartbeat (a fresh
   * lease) to send; the owner keeps each row until that drain ends (`busy`). {@link stop} waits
   * for them.
   */
  private demoteIfExpired(): void {
    if (performance.now() - this.beatSentAt < this.ttlMs || this.owned.size === 0) return;
    for (const [bot, epoch] of [...this.owned]) {
      this.owned.delete(bot);
      this.o.logger.error(
        { bot, epoch },
        `lost ownership of ${bot}: no heartbeat reached the database for longer than the lease (${this.ttlMs} ms); stopping it here`,
      );
      const stopping: Promise<void> = this.o
        .onLose(bot, "database unreachable past the lease")
        .catch((error) => this.o.logger.error({ err: error, bot }, "stopping a bot lost past the lease failed"))
        .finally(() => this.losing.delete(stopping));
      this.losing.add(stopping);
    }
  }

  /** Stops of bots lost past the lease, still draining (see {@link demoteIfExpired}). */
  private readonly losing = new Set<Promise<void>>();

  private async round(): Promise<void> {
    const { store, id, logger } = this.o;
    if (!(await this.beat())) {
      logger.warn({ instance: id }, "instance row was gone (taken for dead); registering again");
      await store.owners.register(id, this.host, process.pid, this.o.bots, this.ttlMs);
    }
    const [instances, rows] = await Promise.all([store.owners.instances(), store.owners.owners()]);
    const byBot = new Map(rows.map((r) => [r.bot, r]));
    // Fencing: a bot whose row names another owner or another epoch is lost.
    for (const [bot, epoch] of [...this.owned]) {
      const row = byBot.get(bot);
      if (row?.owner === id && row.epoch === epoch) continue;
      this.owned.delete(bot);
      const reason = row?.owner
        ? `taken over by ${row.owner} at epoch ${row.epoch} (this instance was paused or cut off past its lease)`
        : "ownership row released or removed";
      logger.error({ bot, epoch, now_owner: row?.owner ?? null, now_epoch: row?.epoch ?? null }, `lost ownership of ${bot}: ${reason}; stopping it`);
      await this.o.onLose(bot, reason);
    }
    if (this.stopped) return;
    // Rows still naming this instance that it stopped (cut off from the database past its lease):
    // once the stopped bot's last answers are stored (they still carry this epoch), give the row
    // up, so placement takes it again with a new epoch and a recovery; anything of the old run
    // that comes later is fenced.
    for (const r of [...byBot.values()]) {
      if (r.owner !== id || this.owned.has(r.bot)) continue;
      if (this.o.busy?.(r.bot)) {
        logger.info({ bot: r.bot }, `${r.bot}: waiting for its stopped answers to be stored before taking it up again`);
        continue;
      }
      if (await store.owners.release(r.bot, id, r.epoch)) byBot.set(r.bot, { ...r, owner: null });
    }
    // A process of this host that is gone (kill -9) is dead at once, not after the TTL.
    const goneHere = new Set(instances.filter((i) => i.id !== id && i.host === this.host && pidIsGone(i.pid)).map((i) => i.id));
    const live = instances.filter((i) => i.age_ms < i.ttl_ms && !goneHere.has(i.id));
    // Once in a while (about every 30 rounds): forget instances dead for long.
    if (Math.random() < 1 / 30) await store.owners.pruneDead().catch((e) => logger.debug({ err: e }, "pruning dead instances failed"));
    this.livePeers = live.filter((i) => i.id !== id).length;
    const view = { owners: new Map([...byBot.values()].map((r) => [r.bot, r.owner])), live: new Set(live.map((i) => i.id)) };
    this.view = view;
    const plan = placement(id, this.o.bots, live, [...byBot.values()]);
    let claimed = false;
    const claimOne = async (bot: string): Promise<void> => {
      // Stopping (SIGTERM in the middle of a long first round): take nothing more.
      if (this.stopped) return;
      const from = byBot.get(bot)?.owner;
      const epoch = from && goneHere.has(from) ? await store.owners.takeOver(bot, from, id) : await store.owners.claim(bot, id);
      if (epoch === undefined) return;
      if (this.stopped) {
        // Taken just as the stop came: give it back now, not after the TTL.
        await store.owners
          .release(bot, id, epoch)
          .catch((error) => logger.warn({ err: error, bot }, "ownership could not be released; it passes on after the lease TTL"));
        return;
      }
      const previous = from;
      this.owned.set(bot, epoch);
      claimed = true;
      logger.info({ bot, epoch, previous: previous ?? null }, previous ? `took over ${bot} from ${previous} (dead)` : `owning ${bot}`);
      try {
        await this.o.onAcquire(bot, epoch);
      } catch (error) {
        logger.error({ err: error, bot }, "starting an owned bot failed; giving it back");
        this.owned.delete(bot);
        await this.o.onLose(bot, "start failed");
        await store.owners.release(bot, id, epoch);
      }
    };
    // Bots are independent: claim and start (recovery included) several at once, so the last of
    // 1,000 bots taken at start or over from a dead instance does not wait for 999 others in turn.
    let next = 0;
    const lanes = Math.min(CLAIM_LANES, plan.claim.length);
    await Promise.all(
      Array.from({ length: lanes }, async () => {
        while (next < plan.claim.length) await claimOne(plan.claim[next++]!);
      }),
    );
    if (claimed || this.o.rebalance === false || !plan.handOver) return;
    const bot = plan.handOver;
    const epoch = this.owned.get(bot);
    if (epoch === undefined) return;
    logger.info({ bot, epoch, to_fewer: plan.handOverTo }, `handing ${bot} over to balance instances`);
    // The instance it goes to takes it at its next round; meanwhile it is not an orphan.
    view.owners.set(bot, plan.handOverTo ?? null);
    this.owned.delete(bot);
    await this.o.onLose(bot, "handed over");
    await store.owners.release(bot, id, epoch);
  }

  /**
   * Stops ticking, stops every owned bot (`onLose`, which drains) and gives it back, then removes
   * the instance row, so others take the bots at once instead of after the TTL.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
    await Promise.all([...this.losing]);
    for (const [bot, epoch] of [...this.owned]) {
      this.owned.delete(bot);
      await this.o.onLose(bot, "shutting down");
      await this.o.store.owners
        .release(bot, this.o.id, epoch)
        .catch((error) => this.o.logger.warn({ err: error, bot }, "ownership could not be released; it passes on after the lease TTL"));
    }
    await this.o.store.owners.unregister(this.o.id).catch(() => undefined);
  }
}

/** What one instance should do in a placement round. */
export interface Placement {
  /** Bots to try to take (unowned or owned by a dead instance), in order. */
  claim: string[];
  /** One owned bot to give to an instance that owns at least two fewer, if any. */
  handOver?: string;
  handOverTo?: string;
}

/**
 * Decides a placement round for instance `self` (pure; exported for tests). Fair share =
 * ceil(bots that live instances may own / live instances). An orphan bot (no owner, or a dead
 * one) is claimed while `self` owns fewer than its fair share, or when no other live instance
 * that may own it is below its share (so no bot stays orphaned). One owned bot is handed over
 * when another live instance that may own it owns at least two fewer, and no bot is orphaned.
 */
export function placement(self: string, mine: string[], live: InstanceRow[], rows: OwnerRow[]): Placement {
  const liveIds = new Set(live.map((i) => i.id));
  liveIds.add(self);
  const eligible = new Map<string, string[]>();
  for (const i of live) for (const b of i.bots) eligible.set(b, [...(eligible.get(b) ?? []), i.id]);
  for (const b of mine) if (!eligible.get(b)?.includes(self)) eligible.set(b, [...(eligible.get(b) ?? []), self]);
  const fair = Math.ceil(eligible.size / Math.max(1, liveIds.size));
  const count = new Map<string, number>([...liveIds].map((i) => [i, 0]));
  const byBot = new Map(rows.map((r) => [r.bot, r]));
  for (const r of rows) if (r.owner && liveIds.has(r.owner) && eligible.has(r.bot)) count.set(r.owner, (count.get(r.owner) ?? 0) + 1);
  const claim: string[] = [];
  let own = count.get(self) ?? 0;
  for (const bot of [...mine].sort()) {
    const r = byBot.get(bot);
    if (r?.owner && liveIds.has(r.owner)) continue;
    const othersBelow = (eligible.get(bot) ?? []).some((i) => i !== self && (count.get(i) ?? 0) < fair);
    if (own < fair || !othersBelow) {
      claim.push(bot);
      own++;
    }
  }
  let handOver: string | undefined;
  let handOverTo: string | undefined;
  // A bot without a live owner is about to be taken (maybe one handed over a round ago): hand
  // nothing more over until it is, or two instances both give to a newcomer twice.
  const orphans = [...eligible.keys()].some((b) => {
    const r = byBot.get(b);
    return !r?.owner || !liveIds.has(r.owner);
  });
  if (orphans) return { claim };
  for (const r of rows) {
    if (r.owner !== self || handOver) continue;
    const to = (eligible.get(r.bot) ?? []).find((i) => i !== self && (count.get(i) ?? 0) + 1 < own);
    if (to) {
      handOver = r.bot;
      handOverTo = to;
    }
  }
  return { claim, handOver, handOverTo };
}

/** True when no process with this pid exists on this host. */
function pidIsGone(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  // Another instance id with our pid: an earlier process that had it (a container's pid 1).
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "ESRCH";
  }
}
