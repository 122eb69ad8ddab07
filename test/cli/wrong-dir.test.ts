import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { describe, test } from "node:test";
import { createConnection } from "mysql2/promise";
import { bin, cli } from "../support/cli.js";
import { createTestDatabase, dialects } from "../support/db.js";
import { Fixture } from "../support/fixture.js";

/** Tables of a MySQL database, by URL. */
async function mysqlTables(url: string): Promise<string[]> {
  const u = new URL(url);
  const conn = await createConnection({
    host: u.hostname,
    port: Number(u.port || 3306),
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
    database: u.pathname.slice(1),
  });
  try {
    const [rows] = await conn.query("show tables");
    return (rows as Array<Record<string, string>>).map((r) => Object.values(r)[0]!);
  } finally {
    await conn.end();
  }
}

describe("a wrong directory: read commands create no database", () => {
  test("balance, balance history, status, dialogs, replay in an empty folder: exit 2, where they looked, bots init; nothing created", async () => {
    const fx = new Fixture();
    try {
      const dir = fx.write("elsewhere/.keep", "");
      const cwd = dir.replace(/\/\.keep$/, "");
      for (const args of [["balance"], ["balance", "history"], ["status"], ["dialogs"], ["--json", "status"]]) {
        const r = await bin(args, {}, cwd);
        assert.equal(r.code, 2, `${args.join(" ")}: ${r.stdout}${r.stderr}`);
        assert.match(r.stderr, new RegExp(`no database at ${cwd}/data/bots\\.db`), args.join(" "));
        assert.match(r.stderr, new RegExp(`configs: ${cwd}/configs does not exist either`));
        assert.match(r.stderr, /run bots in the project folder, or pass --config-dir DIR and --db URL; to start a new project: bots init/);
        assert.doesNotMatch(r.stdout + r.stderr, /balance add/, "no invitation to top up here");
      }
      const replay = await bin(["replay", "--since", "1h"], {}, cwd);
      assert.equal(replay.code, 2);
      assert.match(replay.stderr, /configs: config directory does not exist/);
      assert.deepEqual(readdirSync(cwd), [".keep"], "no data/ folder, no database");
      const start = await bin(["start"], {}, cwd);
      assert.equal(start.code, 2);
      assert.match(start.stderr, new RegExp(`no config dir at ${cwd}/configs\\n.*hint: .*bots init`));
      assert.deepEqual(readdirSync(cwd), [".keep"]);
    } finally {
      fx.cleanup();
    }
  });

  for (const dialect of dialects()) {
    test(`a database bots never made is not made by reading it (${dialect}); a top-up makes it`, async () => {
      const fx = new Fixture();
      const db = await createTestDatabase(dialect);
      try {
        const g = ["--config-dir", fx.configDir, "--db", db.url];
        const r = await cli([...g, "balance", "history"]);
        assert.equal(r.code, 2);
        assert.match(r.stderr, dialect === "sqlite" ? /no database at .*test\.db/ : /database mysql:.* has no bots tables/);
        if (dialect === "sqlite") assert.equal(existsSync(db.url.slice("sqlite:".length)), false);
        else assert.deepEqual(await mysqlTables(db.url), []);
        const refused = await cli([...g, "balance", "add", "5", "--yes"]);
        assert.equal(refused.code, 2);
        assert.match(refused.stderr, /account 'default' is new/);
        if (dialect === "sqlite") assert.equal(existsSync(db.url.slice("sqlite:".length)), false, "a refused top-up creates no database");
        const add = await cli([...g, "balance", "add", "5", "--yes", "--new-account"]);
        assert.equal(add.code, 0, add.stderr);
        const again = await cli([...g, "balance", "history", "--json"]);
        assert.equal(again.code, 0, again.stderr);
        assert.equal((JSON.parse(again.stdout) as { ledger: unknown[] }).ledger.length, 1);
      } finally {
        await db.drop();
        fx.cleanup();
      }
    });
  }
});
