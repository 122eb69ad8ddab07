import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { LlmError } from "../../src/errors.js";
import { LlmClient, type ToolDefinition } from "../../src/llm/client.js";
import { FakeOpenAI } from "../support/openai-server.js";

const TEXT = "Green, blue and grey; delivery in three days.";

describe("LlmClient with onDelta: streamed rounds (Chat Completions stream: true)", () => {
  const llm = new FakeOpenAI();
  before(() => llm.start());
  after(() => llm.stop());
  const client = (o: { timeoutMs?: number; maxRetries?: number } = {}) =>
    new LlmClient({
      apiKey: "sk-test",
      baseURL: llm.url,
      model: "m",
      temperature: 0,
      maxTokens: 100,
      timeoutMs: o.timeoutMs ?? 5000,
      maxRetries: o.maxRetries ?? 2,
      retry: { baseMs: 10, maxMs: 20 },
    });

  test("the text grows through onDelta; the completion is the whole text with the streamed usage", async () => {
    llm.script.push({ text: TEXT });
    const seen: string[] = [];
    const c = await client().complete([{ role: "user", content: "colours?" }], { onDelta: (t) => seen.push(t) });
    assert.equal(c.text, TEXT);
    assert.equal(seen.length, TEXT.split(" ").length, "one delta a chunk");
    for (const [i, t] of seen.entries()) {
      assert.ok(TEXT.startsWith(t));
      if (i > 0) assert.ok(t.length > seen[i - 1]!.length);
    }
    assert.equal(seen.at(-1), TEXT);
    assert.equal(c.usage.completion_tokens, Math.ceil(TEXT.length / 4));
    assert.ok(c.usage.prompt_tokens > 0);
    const req = llm.requests.at(-1)!;
    assert.equal(req.stream, true);
    assert.deepEqual(req.stream_options, { include_usage: true });
  });

  test("without onDelta the request is not streamed", async () => {
    llm.script.push({ text: TEXT });
    const c = await client().complete([{ role: "user", content: "colours?" }]);
    assert.equal(c.text, TEXT);
    assert.equal(llm.requests.at(-1)!.stream, undefined);
  });

  test("two tool calls streamed in fragments are assembled by index, run, and the next round streams again", async () => {
    const ran: Array<Record<string, unknown>> = [];
    const tool: ToolDefinition<null> = {
      name: "lookup",
      description: "d",
      parameters: { type: "object" },
      run: async (args) => (ran.push(args), `found ${String(args.sku)}`),
    };
    const before = llm.requests.length;
    llm.script.push(
      {
        toolCalls: [
          { name: "lookup", arguments: { sku: "A-1", note: "зелёный" } },
          { name: "lookup", arguments: { sku: "B-22" } },
        ],
      },
      { text: TEXT },
    );
    const seen: string[] = [];
    const c = await client().complete([{ role: "user", content: "stock?" }], { tools: [tool], context: null, onDelta: (t) => seen.push(t) });
    assert.equal(c.text, TEXT);
    assert.deepEqual(ran, [{ sku: "A-1", note: "зелёный" }, { sku: "B-22" }]);
    assert.deepEqual(
      c.toolCalls.map((t) => [t.name, t.arguments, t.result]),
      [
        ["lookup", JSON.stringify({ sku: "A-1", note: "зелёный" }), "found A-1"],
        ["lookup", JSON.stringify({ sku: "B-22" }), "found B-22"],
      ],
    );
    const second = llm.requests[before + 1]!;
    assert.equal(second.stream, true);
    const n = llm.requests.length;
    assert.deepEqual(
      second.messages.slice(-2).map((m) => m.tool_call_id),
      [`call_${n - 1}_0`, `call_${n - 1}_1`],
    );
    assert.equal(seen.at(-1), TEXT, "the text of the round after the tools");
    assert.equal(c.usage.completion_tokens, 10 + Math.ceil(TEXT.length / 4), "usage summed over both rounds");
  });

  test("a stream cut mid-way is asked again; the text restarts from empty", async () => {
    llm.script.push({ text: TEXT, cutAfterChunks: 3, chunkDelayMs: 20 }, { text: TEXT });
    const seen: string[] = [];
    const before = llm.requests.length;
    const c = await client().complete([{ role: "user", content: "colours?" }], { onDelta: (t) => seen.push(t) });
    assert.equal(c.text, TEXT);
    assert.equal(llm.requests.length - before, 2);
    const restart = seen.findIndex((t, i) => i > 0 && t.length < seen[i - 1]!.length);
    assert.equal(restart, 3, "three deltas, then the retried round from its first chunk");
  });

  test("a stream that ends early without finish_reason is not an answer: asked again", async () => {
    llm.script.push({ text: TEXT, endAfterChunks: 2 }, { text: TEXT });
    const before = llm.requests.length;
    const c = await client().complete([{ role: "user", content: "colours?" }], { onDelta: () => {} });
    assert.equal(c.text, TEXT);
    assert.equal(llm.requests.length - before, 2);
  });

  test("a stream that stalls for timeout_s fails as unavailable (retried, then given up)", async () => {
    llm.script.push({ text: TEXT, stallAfterChunks: 2 }, { text: TEXT, stallAfterChunks: 2 });
    const before = llm.requests.length;
    await assert.rejects(
      client({ timeoutMs: 300, maxRetries: 1 }).complete([{ role: "user", content: "colours?" }], { onDelta: () => {} }),
      (e: unknown) => e instanceof LlmError && e.code === "LLM_UNAVAILABLE" && /stalled: its stream sent nothing for 0.3 s/.test(e.message),
    );
    assert.equal(llm.requests.length - before, 2, "asked once more after the first stall");
  });

  test("an abort while streaming ends the call as an abort, not retried", async () => {
    llm.script.push({ text: TEXT, chunkDelayMs: 200 });
    const stop = new AbortController();
    const before = llm.requests.length;
    const call = client().complete([{ role: "user", content: "colours?" }], { signal: stop.signal, onDelta: () => stop.abort() });
    await assert.rejects(call, (e: Error) => !(e instanceof LlmError));
    assert.equal(llm.requests.length - before, 1);
  });
});
