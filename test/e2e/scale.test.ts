import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { finished, runBots } from "../support/cli.js";
import { dialects } from "../support/db.js";
import { eventually, TOKEN } from "../support/harness.js";
import { Scenario, type Child } from "../support/scenario.js";
import { botMessages, userSays } from "../support/telegram.js";

interface StatusJson {
  instances: Array<{ id: string; alive: boolean; bots_owned: string[] }>;
  owners: Array<{ bot: string; owner: string | null; epoch: number }>;
}

/** `bots start tg` as instance `id` with a 2 s lease, beside the scenario's others. */
const startInstance = (s: Scenario, id: string): Promise<Child> => s.start(["--instance-id", id, "--lease-ttl", "2"]);

/** `bots status --json`: instances and owners. */
async function status(s: Scenario): Promise<StatusJson> {
  const r = await runBots(["status", "--json"], { cwd: s.fx.root });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as StatusJson;
}

for (const dialect of dialects()) {
  describe(`scale-out: instances own bots, through bin/bots.js (${dialect})`, () => {
    const open: Scenario[] = [];
    after(async () => {
      for (const s of open) await s.close();
    });

    test("a second instance owns nothing while the first lives; after kill -9 of the first it takes the bot over (epoch 2), recovers and answers every message once, in order", async () => {
      // Two `bin/bots.js start` instances of one Telegram bot on one database.
      const s = await Scenario.create(dialect, { concurrency: 8 });
      open.push(s);
      const a = await startInstance(s, "inst-a");
      const b = await startInstance(s, "inst-b");
      let st = await status(s);
      assert.deepEqual(st.owners, [{ bot: "shop-tg", owner: "inst-a", epoch: 1 }]);
      assert.deepEqual(
        st.instances.map((i) => [i.id, i.alive, i.bots_owned]),
        [
          ["inst-a", true, ["shop-tg"]],
          ["inst-b", true, []],
        ],
      );
      const chats = [3001, 3002, 3003];
      for (let i = 0; i < 2; i++) for (const c of chats) await userSays(s.telegram, TOKEN, c, `c${c} m${i}`);
      await eventually(() => chats.every((c) => botMessages(s.telegram, c).length === 2), 20_000, "answered by inst-a");
      a.kill("SIGKILL");
      await finished(a, 10_000);
      for (let i = 2; i < 4; i++) for (const c of chats) await userSays(s.telegram, TOKEN, c, `c${c} m${i}`);
      await eventually(() => chats.every((c) => botMessages(s.telegram, c).length === 4), 20_000, "answered by inst-b after the take-over");
      await new Promise((r) => setTimeout(r, 500));
      for (const c of chats)
        assert.deepEqual(
          botMessages(s.telegram, c).map((m) => m.text),
          [0, 1, 2, 3].map((i) => `echo: c${c} m${i}`),
          `chat ${c}: once each, in order`,
        );
      st = await status(s);
      assert.deepEqual(st.owners, [{ bot: "shop-tg", owner: "inst-b", epoch: 2 }]);
      assert.match(b.out.stderr, /took over shop-tg from inst-a/);
      const runs = await s.store.database.db.selectFrom("recoveries").select("holder").execute();
      assert.deepEqual(
        runs.map((r) => r.holder),
        ["inst-a", "inst-b"],
        "each owner recovered once when it took the bot",
      );
      b.kill("SIGTERM");
      const done = await finished(b, 20_000);
      assert.equal(done.code, 0, done.stderr);
      st = await status(s);
      assert.deepEqual(st.owners, [{ bot: "shop-tg", owner: null, epoch: 2 }], "a clean stop gives the bot back");
      assert.deepEqual(
        st.instances.map((i) => i.id),
        ["inst-a"],
        "the stopped instance's row is gone; the killed one's stays (dead)",
      );
    });
  });
}
