import { BalanceRepo } from "./balance.js";
import { CoachingRepo } from "./coaching.js";
import { CursorsRepo } from "./cursors.js";
import { migrate, openDatabase, type Database, type OpenOptions } from "./db.js";
import { LeasesRepo } from "./leases.js";
import { LeadsRepo } from "./leads.js";
import { MessagesRepo } from "./messages.js";
import { OwnersRepo } from "./owners.js";
import { PostsRepo } from "./posts.js";
import { ProactiveRepo } from "./proactive.js";
import { RecoveriesRepo } from "./recoveries.js";

/** The database and its repositories, as the pipeline and commands use them. */
export interface Store {
  database: Database;
  messages: MessagesRepo;
  balance: BalanceRepo;
  /** Wall posts seen by VK bots (migration 0002). */
  posts: PostsRepo;
  /** Cross-process locks with expiry. */
  leases: LeasesRepo;
  /** Per-bot polling state. */
  cursors: CursorsRepo;
  leads: LeadsRepo;
  /** features.coaching (migration 0008). */
  coaching: CoachingRepo;
  /** Recovery runs of bots at start (migration 0005). */
  recoveries: RecoveriesRepo;
  /** Instances and bot ownership for scale-out (migration 0009). */
  owners: OwnersRepo;
  /** Proactive messages (reminders, summaries) through their statuses (src/core/proactive.ts). */
  proactive: ProactiveRepo;
  close(): Promise<void>;
}

/**
 * Opens the database at `url`, applies pending migrations and builds the repositories.
 * @param now clock in epoch ms (injected in tests)
 * @throws StorageError when the database cannot be opened or migrated
 */
export async function openStore(url: string, options: OpenOptions & { now?: () => number } = {}): Promise<Store> {
  const database = await openDatabase(url, options);
  try {
    await migrate(database);
  } catch (error) {
    await database.close().catch(() => undefined);
    throw error;
  }
  const now = options.now ?? Date.now;
  const owners = new OwnersRepo(database.db, database.dialect);
  return {
    database,
    messages: new MessagesRepo(database.db, now, database.dialect),
    balance: new BalanceRepo(database.db, now, database.dialect),
    posts: new PostsRepo(database.db, now),
    leases: new LeasesRepo(database.db, now),
    cursors: new CursorsRepo(database.db, now),
    leads: new LeadsRepo(database.db, now),
    coaching: new CoachingRepo(database.db, now),
    recoveries: new RecoveriesRepo(database.db),
    owners,
    proactive: new ProactiveRepo(database.db, owners),
    close: () => database.close(),
  };
}

export { DEFAULT_DATABASE_URL, migrate, openDatabase } from "./db.js";
export type { Database } from "./db.js";
