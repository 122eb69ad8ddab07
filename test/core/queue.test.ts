import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { compose } from "../../src/lib/compose.js";
import { KeyedQueue, Semaphore } from "../../src/core/queue.js";
import { classifyHttpError, parseRetryAfter, withRetries } from "../../src/lib/retry.js";

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("KeyedQueue", () => {
  test("one at a time per key, in order; concurrent across keys up to the limit", async () => {
    const q = new KeyedQueue(3);
    const log: string[] = [];
    let active = 0;
    let peak = 0;
    const perKeyActive = new Map<string, number>();
    for (let i = 0; i < 5; i++) {
      for (const key of ["a", "b", "c", "d", "e"]) {
        q.push(key, async () => {
          active++;
          peak = Math.max(peak, active);
          perKeyActive.set(key, (perKeyActive.get(key) ?? 0) + 1);
          assert.equal(perKeyActive.get(key), 1, `key ${key} ran twice at once`);
          await tick(key === "a" ? 5 : 1);
          log.push(`${key}${i}`);
          perKeyActive.set(key, 0);
          active--;
        });
      }
    }
    await q.onIdle();
    assert.equal(peak, 3);
    for (const key of ["a", "b", "c", "d", "e"])
      assert.deepEqual(
        log.filter((l) => l[0] === key),
        [0, 1, 2, 3, 4].map((i) => `${key}${i}`),
      );
  });

  test("a key that never finishes holds one slot only", async () => {
    const q = new KeyedQueue(2);
    q.push("stuck", () => new Promise(() => undefined));
    const done: string[] = [];
    for (let i = 0; i < 10; i++) q.push(`k${i}`, async () => void done.push(`k${i}`));
    for (let t = 0; t < 100 && done.length < 10; t++) await tick(5);
    assert.equal(done.length, 10);
    assert.equal(q.size, 1);
  });

  test("errors go to the handler and the key goes on", async () => {
    const errors: unknown[] = [];
    const q = new KeyedQueue(1, (e) => errors.push(e));
    const ran: number[] = [];
    q.push("a", async () => {
      throw new Error("boom");
    });
    q.push("a", async () => void ran.push(2));
    await q.onIdle();
    assert.equal(errors.length, 1);
    assert.deepEqual(ran, [2]);
  });
});

describe("Semaphore", () => {
  test("at most `limit` holders; waiters served in arrival order; a failure frees its slot", async () => {
    const sem = new Semaphore(2);
    let peak = 0;
    const order: number[] = [];
    const jobs = Array.from({ length: 8 }, (_, i) =>
      sem
        .run(async () => {
          peak = Math.max(peak, sem.inUse);
          order.push(i);
          await tick(i === 0 ? 20 : 2);
          if (i === 3) throw new Error("job 3 failed");
          return i;
        })
        .catch((e: Error) => e.message),
    );
    assert.deepEqual(await Promise.all(jobs), [0, 1, 2, "job 3 failed", 4, 5, 6, 7]);
    assert.equal(peak, 2);
    assert.deepEqual(order, [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.equal(sem.inUse, 0);
  });
});

describe("compose", () => {
  test("runs stages in order; a stage that skips next ends the chain", async () => {
    const seen: number[] = [];
    await compose<number[]>([
      async (c, next) => {
        c.push(1);
        await next();
        c.push(4);
      },
      async (c, next) => {
        c.push(2);
        await next();
      },
      async (c) => void c.push(3),
      async (c) => void c.push(99),
    ])(seen);
    assert.deepEqual(seen, [1, 2, 3, 4]);
  });
  test("refuses next() called twice", async () => {
    let runs = 0;
    const chain = compose<object>([
      async (_c, next) => {
        await next();
        await next();
      },
      async () => void runs++,
    ]);
    await assert.rejects(chain({}), /next\(\) called twice/);
    assert.equal(runs, 1);
  });
});

describe("retry policy", () => {
  test("classifies statuses", () => {
    assert.deepEqual(classifyHttpError({ status: 429, retryAfterS: 2 }), { retry: true, afterMs: 2000 });
    assert.deepEqual(classifyHttpError({ status: 503 }), { retry: true });
    assert.deepEqual(classifyHttpError({ status: 401 }), { retry: false });
    assert.deepEqual(classifyHttpError({ status: 400 }), { retry: false });
    assert.deepEqual(classifyHttpError(new Error("ECONNRESET")), { retry: true });
    assert.equal(parseRetryAfter("3"), 3000);
    assert.equal(parseRetryAfter(new Date(Date.now() + 60_000).toUTCString(), Date.now())! > 50_000, true);
  });
  test("retries transient failures, stops at fatal ones and when retries run out", async () => {
    let n = 0;
    assert.equal(await withRetries(async () => (++n < 3 ? Promise.reject(Object.assign(new Error("x"), { status: 500 })) : "ok"), { baseMs: 1 }), "ok");
    assert.equal(n, 3);
    n = 0;
    await assert.rejects(
      withRetries(async () => (n++, Promise.reject(Object.assign(new Error("auth"), { status: 401 }))), { baseMs: 1 }),
      /auth/,
    );
    assert.equal(n, 1);
    n = 0;
    await assert.rejects(
      withRetries(async () => (n++, Promise.reject(Object.assign(new Error("down"), { status: 502 }))), { baseMs: 1, retries: 2 }),
      /down/,
    );
    assert.equal(n, 3);
  });
});
