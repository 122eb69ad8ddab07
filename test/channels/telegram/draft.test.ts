import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, mock, test } from "node:test";
import { TelegramDraft } from "../../../src/channels/telegram/draft.js";
import { splitText } from "../../../src/lib/text.js";

/** A draft whose calls are recorded and settled by the test; time is node:test's mocked clock. */
function draftWith() {
  const calls: Array<{ draftId: number; text: string; at: number; settle: (error?: unknown) => void }> = [];
  const failures: unknown[] = [];
  const draft = new TelegramDraft({
    call: (draftId, text) =>
      new Promise((resolve, reject) => {
        calls.push({ draftId, text, at: Date.now(), settle: (error) => (error ? reject(error) : resolve(true)) });
      }),
    onFailure: (e) => failures.push(e),
    now: () => Date.now(),
  });
  return { draft, calls, failures };
}

/** Lets settled call promises run their callbacks. */
const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("TelegramDraft: sendMessageDraft pacing", () => {
  beforeEach(() => mock.timers.enable({ apis: ["setTimeout", "Date"], now: 1_000_000 }));
  afterEach(() => mock.timers.reset());

  test("the first text goes at once; later ones wait for the call in flight and 300 ms, only the latest is sent", async () => {
    const { draft, calls } = draftWith();
    draft.update("Hello");
    assert.deepEqual(
      calls.map((c) => c.text),
      ["Hello"],
    );
    assert.ok(calls[0]!.draftId >= 1 && Number.isInteger(calls[0]!.draftId));
    draft.update("Hello, wor");
    draft.update("Hello, world");
    mock.timers.tick(400);
    assert.equal(calls.length, 1, "nothing while a call is in flight");
    calls[0]!.settle();
    await flush();
    assert.equal(calls.length, 2, "the latest text once the call returned, 300 ms after the first started");
    assert.equal(calls[1]!.text, "Hello, world");
    calls[1]!.settle();
    await flush();
    draft.update("Hello, world! How");
    assert.equal(calls.length, 2, "too soon after the last start");
    mock.timers.tick(299);
    assert.equal(calls.length, 2);
    mock.timers.tick(1);
    assert.equal(calls.length, 3);
    assert.equal(calls[2]!.at - calls[1]!.at, 300);
    assert.ok(
      calls.every((c) => c.draftId === calls[0]!.draftId),
      "one draft_id for the answer",
    );
  });

  test("stop cancels what is waiting; nothing is sent after it", async () => {
    const { draft, calls } = draftWith();
    draft.update("a");
    calls[0]!.settle();
    await flush();
    draft.update("a b");
    draft.stop();
    mock.timers.tick(1000);
    draft.update("a b c");
    mock.timers.tick(1000);
    assert.equal(calls.length, 1);
  });

  test("a failed call ends the drafts and is reported once", async () => {
    const { draft, calls, failures } = draftWith();
    draft.update("a");
    draft.update("a b");
    const refusal = Object.assign(new Error("429"), { status: 429 });
    calls[0]!.settle(refusal);
    await flush();
    mock.timers.tick(1000);
    draft.update("a b c");
    mock.timers.tick(1000);
    assert.equal(calls.length, 1);
    assert.deepEqual(failures, [refusal]);
  });

  test("blank text is not sent; past 4096 characters the first part goes once and nothing after it", async () => {
    const { draft, calls } = draftWith();
    draft.update("   ");
    assert.equal(calls.length, 0);
    const long = `${"word ".repeat(900)}\n\n${"more ".repeat(200)}`;
    draft.update(long);
    assert.equal(calls.length, 1);
    assert.equal(calls[0]!.text, splitText(long.trim(), 4096)[0]);
    assert.ok(calls[0]!.text.length <= 4096);
    calls[0]!.settle();
    await flush();
    draft.update(`${long} and more`);
    mock.timers.tick(1000);
    assert.equal(calls.length, 1);
  });
});
