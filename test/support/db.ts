import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createConnection } from "mysql2/promise";

/** A database for one test: its URL and how to throw it away. */
export interface TestDatabase {
  dialect: "sqlite" | "mysql";
  url: string;
  drop(): Promise<void>;
}

/**
 * The dialects tests run on: SQLite always; MariaDB/MySQL too when `MYSQL_URL` is set (CI sets
 * it). A test that asks for MySQL fails loudly when the server is unreachable: never skips.
 */
export function dialects(): Array<"sqlite" | "mysql"> {
  return process.env.MYSQL_URL ? ["sqlite", "mysql"] : ["sqlite"];
}

/** Creates a fresh database of the dialect: a temp SQLite file, or a new MySQL database. */
export async function createTestDatabase(dialect: "sqlite" | "mysql"): Promise<TestDatabase> {
  if (dialect === "sqlite") {
    const dir = mkdtempSync(path.join(os.tmpdir(), "bots-db-"));
    return { dialect, url: `sqlite:${path.join(dir, "test.db")}`, drop: async () => rmSync(dir, { recursive: true, force: true }) };
  }
  const base = process.env.MYSQL_URL;
  if (!base) throw new Error("MYSQL_URL is not set");
  const u = new URL(base);
  const name = `bots_t_${process.pid}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  const admin = await createConnection({
    host: u.hostname,
    port: Number(u.port || 3306),
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
  });
  await admin.query(`CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`);
  await admin.end();
  u.pathname = `/${name}`;
  return {
    dialect,
    url: u.toString(),
    drop: async () => {
      const c = await createConnection({
        host: u.hostname,
        port: Number(u.port || 3306),
        user: decodeURIComponent(u.username),
        password: decodeURIComponent(u.password),
      });
      await c.query(`DROP DATABASE IF EXISTS \`${name}\``);
      await c.end();
    },
  };
}
