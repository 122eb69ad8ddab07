import { AsyncLocalStorage } from "node:async_hooks";
import http from "node:http";
import https from "node:https";
import { UnconfirmedSendError } from "../errors.js";
import { withRetries, type RetryDecision } from "../lib/retry.js";
import type { SendProgress } from "../core/types.js";

/**
 * What one API request of a send went through, filled in by {@link GatedHttpAgent} /
 * {@link GatedHttpsAgent} for the request made inside {@link throughGate}.
 */
export interface WriteGate {
  /**
   * Awaited before the request gets a socket (nothing of it is written before): the caller's
   * durable "being written" mark. Throwing cancels the request unsent.
   */
  beforeWrite?: () => Promise<void>;
  /** The request reached a gated agent (false: it went out some other way, nothing is known). */
  seen: boolean;
  /** `beforeWrite` resolved. */
  marked: boolean;
  /**
   * Every byte of the request was handed to the socket (ClientRequest `finish`): from here the
   * server may have read and acted on it, whatever happens to the connection.
   */
  written: boolean;
  /** What `beforeWrite` threw (the request was destroyed unsent). */
  hookError?: unknown;
}

const gates = new AsyncLocalStorage<WriteGate>();

/** The gate of the request being made now (inside {@link throughGate}), if any. */
export function currentGate(): WriteGate | undefined {
  return gates.getStore();
}

/**
 * Runs `fn` inside `gate` (a gate captured with {@link currentGate} where a request was queued,
 * re-entered where the queue makes it: vk-io's API worker).
 */
export function withinGate<T>(gate: WriteGate | undefined, fn: () => T): T {
  return gate ? gates.run(gate, fn) : fn();
}

/**
 * Runs `fn` outside any gate: its requests go out at once through a gated agent, whatever gate
 * the caller is in (a best-effort call that is not a send: a Telegram draft).
 */
export function outsideGate<T>(fn: () => T): T {
  return gates.exit(fn);
}

/**
 * Runs `fn` (which makes one HTTP request through a gated agent) with a fresh gate.
 * @returns the gate as filled in by the agent, and what `fn` returned or threw
 */
export async function throughGate<T>(
  beforeWrite: (() => Promise<void>) | undefined,
  fn: () => Promise<T>,
): Promise<{ gate: WriteGate } & ({ ok: true; value: T } | { ok: false; error: unknown })> {
  const gate: WriteGate = { beforeWrite, seen: false, marked: false, written: false };
  try {
    const value = await gates.run(gate, fn);
    return { gate, ok: true, value };
  } catch (error) {
    return { gate, ok: false, error };
  }
}

type AddRequest = (req: http.ClientRequest, options: unknown) => void;

/**
 * The gate step of `Agent.addRequest` (Node's http: ClientRequest calls it from its constructor
 * and buffers what is written to it until the agent hands it a socket). The first request made
 * inside a gate waits for the gate's `beforeWrite`, then is given to the real agent; `finish`
 * (all bytes handed to the socket) marks it written.
 */
function gatedAdd(add: AddRequest, req: http.ClientRequest, options: unknown): void {
  const gate = gates.getStore();
  if (!gate || gate.seen) {
    add(req, options);
    return;
  }
  gate.seen = true;
  req.once("finish", () => (gate.written = true));
  if (!gate.beforeWrite) {
    add(req, options);
    return;
  }
  // A request destroyed before it has a socket (the mark failed, or it was aborted while the
  // mark was written) still goes to the agent: Node then ends it with its error, writing nothing.
  gate.beforeWrite().then(
    () => {
      gate.marked = true;
      add(req, options);
    },
    (error: unknown) => {
      gate.hookError = error;
      req.destroy(error instanceof Error ? error : new Error(String(error)));
      add(req, options);
    },
  );
}

/** Node's own `Agent.addRequest` (not in @types/node) of `proto`, bound to `agent`. */
function agentAdd(proto: http.Agent, agent: http.Agent): AddRequest {
  return (proto as unknown as { addRequest: AddRequest }).addRequest.bind(agent);
}

/** A keep-alive `http.Agent` whose requests made inside {@link throughGate} wait for the gate. */
export class GatedHttpAgent extends http.Agent {
  addRequest(req: http.ClientRequest, options: unknown): void {
    gatedAdd(agentAdd(http.Agent.prototype, this), req, options);
  }
}

/** The https counterpart of {@link GatedHttpAgent}. */
export class GatedHttpsAgent extends https.Agent {
  addRequest(req: http.ClientRequest, options: unknown): void {
    gatedAdd(agentAdd(https.Agent.prototype, this), req, options);
  }
}

/** Options of {@link gatedSend}. */
export interface GatedSendOptions<T> {
  /** API method, for messages. */
  method: string;
  /** One request to the channel's API (through a gated agent). */
  call: () => Promise<T>;
  /**
   * For an error the API answered (it carries a status): retry or not. Errors without a status
   * are decided here by whether the request was written.
   */
  classify: (error: unknown) => RetryDecision;
  /** The send's progress (the pipeline's marks); part is the 0-based part of `parts`. */
  progress?: SendProgress;
  part?: number;
  parts?: number;
  /**
   * True when the channel's requests cannot be gated (the agent is not ours): `beforeWrite` is
   * awaited before the call and every error without a status counts as unconfirmed.
   */
  ungated?: boolean;
  /** Retries after the first attempt. */
  retries: number;
  /** First back-off, ms (doubles). */
  baseMs: number;
  onRetry?: (error: unknown, attempt: number, waitMs: number) => void;
}

/**
 * One part of a send, tried until it is delivered, refused, or may have arrived (the deliver
 * stage; docs/durability.md). Each attempt's request waits for `progress.beforeWrite` before a byte is
 * written. An attempt that failed before its request was written (connection refused, DNS, a
 * reset while connecting) or that the API refused (429, 5xx: retried; other errors: final) was
 * not delivered: `progress.notWritten` makes the row resumable again. A connection that failed
 * after the request was written is never retried.
 * @returns what the API returned
 * @throws UnconfirmedSendError when the request was written and no answer came
 * @throws what `beforeWrite`/`notWritten` threw (e.g. FencedError, a database error): nothing of
 *   this attempt was written
 * @throws the API's error when it refused finally or retries ran out (not delivered)
 */
export async function gatedSend<T>(o: GatedSendOptions<T>): Promise<T> {
  const part = o.part ?? 0;
  const before = o.progress ? () => o.progress!.beforeWrite(part, o.parts ?? 1) : undefined;
  // Errors that end the send at once, whatever their class.
  const final = new WeakSet<object>();
  const attempt = async (): Promise<T> => {
    if (o.ungated && before) await before();
    const r = await throughGate(o.ungated ? undefined : before, o.call);
    if (r.ok) return r.value;
    const { gate, error } = r;
    if (gate.hookError !== undefined) throw finalError(final, gate.hookError);
    const status = (error as { status?: number } | undefined)?.status;
    // No answer from the API: unless the request provably was not written, it may have arrived.
    if (status === undefined && (o.ungated || !gate.seen || gate.written)) throw finalError(final, new UnconfirmedSendError(o.method, part, error));
    // Not delivered: the API refused it, or it never left. The row is resumable again.
    if ((o.ungated || gate.marked) && o.progress) await o.progress.notWritten(part).catch((e: unknown) => Promise.reject(finalError(final, e)));
    throw error;
  };
  return withRetries(attempt, {
    retries: o.retries,
    baseMs: o.baseMs,
    classify: (e) =>
      typeof e === "object" && e !== null && final.has(e)
        ? { retry: false }
        : (e as { status?: number })?.status === undefined
          ? { retry: true }
          : o.classify(e),
    onRetry: o.onRetry,
  });
}

function finalError(final: WeakSet<object>, error: unknown): unknown {
  if (typeof error === "object" && error !== null) final.add(error);
  return error;
}
