import type { Logger } from "pino";
import type { API, APIError, APIRequest, SequentialWorker } from "vk-io";
import { currentGate, withinGate, type WriteGate } from "../write-gate.js";

/** VK error code "too many requests per second". */
const TOO_MANY_REQUESTS = 6;

/**
 * Makes VK error 6 (too many requests) reach our retry policy instead of vk-io's own loop:
 * vk-io's `SequentialWorker.handleError` re-queues a request answered with 6 without limit
 * (ignoring `apiRetryLimit`), so a call could never fail. We replace the API's worker (vk-io
 * 4.10 keeps it in the private field `worker`, built once from `apiMode: "sequential"`) by a
 * subclass that rejects 6 like any other error; `withRetries` then retries it with back-off,
 * bounded. Other errors (captcha...) keep vk-io's handling.
 *
 * The same subclass carries a send's write gate (src/channels/write-gate.ts) across vk-io's
 * queue: the gate current when a request is queued (`enqueue`, called from `api.call`) is
 * re-entered when the worker makes it (`execute` → `APIRequest.make` → node-fetch → the agent),
 * so the request waits for its durable mark before a byte is written.
 * @param Worker vk-io's exported `SequentialWorker` (vk-io is imported lazily by the caller)
 * @returns false (and a warning in the log) when vk-io's internals are not as expected; then
 *   vk-io keeps retrying 6 by itself and sends cannot be gated (the caller marks before it sends)
 */
export function boundTooManyRequests(api: API, Worker: typeof SequentialWorker, logger: Logger): boolean {
  const holder = api as unknown as { worker?: unknown };
  if (!(holder.worker instanceof Worker) || holder.worker.constructor !== Worker || typeof Worker.prototype.handleError !== "function") {
    logger.warn("vk-io internals changed (API.worker); VK error 6 stays retried by vk-io without a bound");
    return false;
  }
  const gated = new WeakMap<APIRequest, WriteGate>();
  class BoundedWorker extends Worker {
    override enqueue(request: APIRequest): void {
      const gate = currentGate();
      if (gate) gated.set(request, gate);
      super.enqueue(request);
    }
    override execute(request: APIRequest | undefined = this.queue.shift()): Promise<void> {
      return withinGate(request && gated.get(request), () => super.execute(request));
    }
    override async handleError(request: APIRequest, error: APIError): Promise<void> {
      if (error.code === TOO_MANY_REQUESTS) {
        request.reject(error);
        return;
      }
      return super.handleError(request, error);
    }
  }
  holder.worker = new BoundedWorker(api);
  return true;
}
