import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RecentIds } from "../../src/lib/recent-ids.js";

describe("RecentIds", () => {
  it("forgets the oldest key past the limit", () => {
    const ids = new RecentIds<string>(2);
    ids.add("a");
    ids.add("b");
    ids.add("c");
    assert.equal(ids.has("a"), false);
    assert.equal(ids.has("b"), true);
    assert.equal(ids.has("c"), true);
  });

  it("makes a key added again the newest", () => {
    const ids = new RecentIds(2);
    ids.add(1);
    ids.add(2);
    ids.add(1);
    ids.add(3);
    assert.equal(ids.has(2), false);
    assert.equal(ids.has(1), true);
    assert.equal(ids.has(3), true);
  });
});
