import type nodeFetchModule from "node-fetch";

/** node-fetch 2's `fetch` (the default export of `node-fetch`). */
export type NodeFetch = typeof nodeFetchModule;

/**
 * The `fetch` the openai SDK calls the model API with (its `fetch` option), made from node-fetch
 * 2 (loaded by the caller together with the SDK). A request with a JSON body or none (Chat
 * Completions, streamed or not) goes through node-fetch on Node's global http/https agents
 * (keep-alive); any other (the multipart upload of an audio transcription, a `Request` object)
 * through the global fetch. Why: the global fetch (undici, over web streams) takes 0.31–0.42 ms
 * of CPU a chat completion where node-fetch takes 0.18–0.23 ms (2026-12-06, 3,000 calls, 32 in
 * flight, loopback), a sixth of our whole cost of a message then (docs/architecture.md, "Cost
 * per message", "The model's HTTP client").
 *
 * What the SDK relies on holds for both: `status`/`ok`, `headers.get`, `json()`/`text()`, the
 * body as an async iterable of bytes for server-sent events (node-fetch yields Buffers),
 * redirects followed, and `signal` aborting the request or its body with an error named
 * `AbortError`. A connection failure rejects with node-fetch's `FetchError`, whose `code` is the
 * socket's (`ECONNREFUSED`, `ECONNRESET`); the SDK makes it an `APIConnectionError` with it as
 * `cause` (read by src/llm/client.ts `toLlmError`).
 */
export function modelFetch(nodeFetch: NodeFetch): typeof fetch {
  return ((input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const body = init?.body;
    const json = body === undefined || body === null || typeof body === "string";
    if (!json || (typeof input !== "string" && !(input instanceof URL))) return fetch(input, init);
    return nodeFetch(String(input), {
      method: init?.method,
      // A Headers object or a plain record: node-fetch reads either.
      headers: init?.headers as Record<string, string> | undefined,
      body: body ?? undefined,
      // Node's AbortSignal, which node-fetch accepts (it checks the class name).
      signal: init?.signal as nodeFetchModule.RequestInit["signal"],
      redirect: init?.redirect,
    }) as unknown as Promise<Response>;
  }) as typeof fetch;
}
