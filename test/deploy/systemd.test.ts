import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import { promisify } from "node:util";
import { BIN, REPO } from "../support/cli.js";

const UNITS = ["bots.service", "bots-poll-2gis.service", "bots-poll-2gis.timer"];
const dir = path.join(REPO, "deploy/systemd");

/** `Key=value` lines of a unit file's section. */
function section(text: string, name: string): Map<string, string> {
  const out = new Map<string, string>();
  let cur = "";
  for (const line of text.split("\n")) {
    const h = /^\[(.+)\]$/.exec(line.trim());
    if (h) cur = h[1]!;
    else if (cur === name && /^\w+=/.test(line)) out.set(line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1));
  }
  return out;
}

describe("deploy/systemd units", () => {
  test("systemd-analyze verify accepts them (ExecStart pointed at this checkout's bin/bots.js)", async () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), "bots-units-"));
    try {
      for (const u of UNITS) {
        // verify checks that ExecStart's program exists; on a server it is /usr/local/bin/bots.
        writeFileSync(path.join(tmp, u), readFileSync(path.join(dir, u), "utf8").replaceAll("/usr/local/bin/bots", BIN));
      }
      const r = await promisify(execFile)("systemd-analyze", ["verify", ...UNITS.map((u) => path.join(tmp, u))], { cwd: tmp, timeout: 60_000 }).then(
        (x) => ({ code: 0, stderr: x.stderr }),
        (e: { code?: number; stderr?: string }) => ({ code: e.code ?? 1, stderr: e.stderr ?? String(e) }),
      );
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr.trim(), "", "no warnings");
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  test("bots.service: a service user, Restart=on-failure, env file, working dir, and TimeoutStopSec above --drain-timeout", () => {
    const s = section(readFileSync(path.join(dir, "bots.service"), "utf8"), "Service");
    assert.equal(s.get("User"), "bots");
    assert.equal(s.get("Restart"), "on-failure");
    assert.ok(s.get("EnvironmentFile"));
    assert.ok(s.get("WorkingDirectory"));
    const exec = s.get("ExecStart")!;
    assert.match(exec, /\bbots start\b/);
    const drain = Number(/--drain-timeout (\d+)/.exec(exec)?.[1] ?? 10);
    const stop = Number(s.get("TimeoutStopSec"));
    assert.ok(stop > drain && stop <= drain + 60, `TimeoutStopSec ${stop} must leave the ${drain} s drain room and not much more`);
    assert.match(exec, /--http-port \d+/, "an explicit HTTP port, not the 8080 that vk.callback.port also defaults to");
  });

  test("the 2GIS timer runs the poll service", () => {
    const t = section(readFileSync(path.join(dir, "bots-poll-2gis.timer"), "utf8"), "Timer");
    assert.equal(t.get("Unit"), "bots-poll-2gis.service");
    assert.match(section(readFileSync(path.join(dir, "bots-poll-2gis.service"), "utf8"), "Service").get("ExecStart")!, /bots poll 2gis$/);
  });
});
