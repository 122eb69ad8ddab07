import { AsyncLocalStorage, AsyncResource } from "node:async_hooks";
import http from "node:http";
import https from "node:https";
import type net from "node:net";
import type { Duplex } from "node:stream";
import { TLSSocket } from "node:tls";
import { UnconfirmedSendError } from "../errors.js";
import { withRetries, type RetryDecision } from "../lib/retry.js";
import type { SendProgress } from "../core/types.js";

/**
 * What one API request of a send went through, filled in by {@link GatedHttpAgent} /
 * {@link GatedHttpsAgent} for the request made inside {@link throughGate}.
 */
export interface WriteGate {
  /**
   * Run once the request has a connected socket (TLS: handshake done), its bytes held back in the
   * socket: the caller's durable "being written" mark. Throwing cancels the request unsent.
   */
  beforeWrite?: () => Promise<void>;
  /** The request reached a gated agent (false: it went out some other way, nothing is known). */
  seen: boolean;
  /** `beforeWrite` resolved (the row is marked, whether or not the request was then written). */
  marked: boolean;
  /**
   * The request's bytes were let go to the socket (the uncork right after the mark; without a
   * `beforeWrite`, once connected): from here the server may have read and acted on it, whatever
   * happens to the connection. Never false for a request a byte of which may have left.
   */
  written: boolean;
  /** What `beforeWrite` threw (the request was destroyed unsent). */
  hookError?: unknown;
  /**
   * `beforeWrite`'s run, settled (it never rejects): set once the mark started. The request can
   * fail while the mark is written; its outcome is read after this settles.
   */
  marking?: Promise<void>;
  /**
   * Destroys the request unless it was written (its held-back bytes are discarded): for a call
   * that failed, so that a request the caller gave up on cannot go out later.
   */
  cancel?: () => void;
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
 * Runs `fn` (which makes one HTTP request through a gated agent) with a fresh gate: inside it
 * (the agent finds it in the async context), or, with `routed`, handed to `fn`, which routes its
 * request through {@link gatedAgentFor} itself (no async context is used: in Node 20 entering an
 * `AsyncLocalStorage` turns on promise hooks for the whole process).
 * @returns the gate as filled in by the agent, and what `fn` returned or threw
 */
export async function throughGate<T>(
  beforeWrite: (() => Promise<void>) | undefined,
  fn: (gate: WriteGate) => Promise<T>,
  routed = false,
): Promise<{ gate: WriteGate } & ({ ok: true; value: T } | { ok: false; error: unknown })> {
  const gate: WriteGate = { beforeWrite, seen: false, marked: false, written: false };
  try {
    const value = await (routed ? fn(gate) : gates.run(gate, () => fn(gate)));
    return { gate, ok: true, value };
  } catch (error) {
    return { gate, ok: false, error };
  }
}

/**
 * An agent for the request of one gate: the keep-alive `agent`'s sockets and settings, with the
 * gate step of {@link GatedHttpAgent} for `gate` (found here, not in the async context). Made per
 * request; everything but `addRequest` is read from `agent`.
 */
export function gatedAgentFor<A extends http.Agent>(gate: WriteGate, agent: A): A {
  const base = agentAdd(agent instanceof https.Agent ? https.Agent.prototype : http.Agent.prototype, agent);
  const one = Object.create(agent) as A & { addRequest: AddRequest };
  one.addRequest = (req, options) => gatedAdd(base, req, options, gate);
  return one;
}

type AddRequest = (req: http.ClientRequest, options: unknown) => void;

/**
 * The gate step of `Agent.addRequest` (Node's http: ClientRequest calls it from its constructor).
 * The first request made inside a gate is given to the real agent at once. On its `socket` event
 * (Node's `tickOnSocket` emits it before the request's first flush to that socket) the socket is
 * held corked ({@link hold}), so the request's bytes stay in the socket's buffer. Once the
 * socket is connected (TLS: the handshake done) the gate's `beforeWrite` runs; when it resolves,
 * the socket is uncorked in the same callback and the request counts as written. The connection
 * (a keep-alive one, or one being made) is thus ready when the mark commits, and nothing has
 * left before. A socket that fails to connect never runs the mark; a request destroyed while
 * corked (the mark failed, an abort, the connection lost) has written nothing.
 */
function gatedAdd(add: AddRequest, req: http.ClientRequest, options: unknown, gate: WriteGate | undefined = gates.getStore()): void {
  if (!gate || gate.seen) {
    add(req, options);
    return;
  }
  gate.seen = true;
  const beforeWrite = gate.beforeWrite;
  gate.cancel = () => {
    if (!gate.written) req.destroy(new Error("request cancelled before it was written"));
  };
  // Run in the caller's async context: the mark runs as if called where the request was made.
  // (runInAsyncScope, not AsyncResource.bind: in Node 20 each bind also builds a deprecation
  // wrapper for the bound function's `asyncResource` property, a cost on every send.)
  const scope = new AsyncResource("bots.write-gate");
  const connected = (socket: Duplex, release: () => void) => {
    if (req.destroyed || socket.destroyed) return;
    if (!beforeWrite) {
      gate.written = true;
      release();
      return;
    }
    gate.marking = beforeWrite().then(
      () => {
        gate.marked = true;
        // Destroyed while the mark was written (aborted, the connection lost): its corked bytes
        // were discarded with the socket, nothing was written.
        if (req.destroyed || socket.destroyed) return;
        // Set before the uncork, which hands the bytes to the kernel at once.
        gate.written = true;
        release();
      },
      (error: unknown) => {
        gate.hookError = error;
        // Destroyed while corked: nothing of it was written.
        req.destroy(error instanceof Error ? error : new Error(String(error)));
      },
    );
  };
  req.once("socket", (socket: Duplex) => {
    const release = hold(socket);
    whenConnected(socket, () => scope.runInAsyncScope(connected, null, socket, release));
  });
  add(req, options);
}

/**
 * Corks `socket` until the returned `release` uncorks it. Until then it stays corked even against
 * Node's `OutgoingMessage.end()`, which sets the cork count of its socket to 1 and uncorks it
 * ("fully uncork connection on end()", node:_http_outgoing): a request ended after it got its
 * socket (node-fetch 3 pipes the body in, so vk-io's requests end late) would otherwise let its
 * bytes out then. While held, an `uncork` that would take the count below 1 does nothing.
 */
function hold(socket: Duplex): () => void {
  socket.cork();
  const uncork = socket.uncork;
  socket.uncork = () => {
    if (socket.writableCorked > 1) uncork.call(socket);
  };
  return () => {
    // Back to the prototype's uncork (a keep-alive socket serves later requests), then our one uncork.
    delete (socket as Partial<Duplex>).uncork;
    socket.uncork();
  };
}

/**
 * Calls `then` once `socket` is connected (a TLS socket: its handshake completed), at once if it
 * already is (a keep-alive socket); never if it closes first.
 */
function whenConnected(socket: Duplex, then: () => void): void {
  if (socket.destroyed) return;
  const tls = socket instanceof TLSSocket;
  const connecting = (socket as Partial<net.Socket>).connecting === true;
  if (!connecting && (!tls || handshakeDone(socket))) {
    then();
    return;
  }
  const event = tls ? "secureConnect" : "connect";
  const ready = () => {
    socket.off("close", closed);
    then();
  };
  const closed = () => socket.off(event, ready);
  socket.once(event, ready);
  socket.once("close", closed);
}

/** A TLS client socket's handshake completed (`getProtocol()` is null before it connects, "unknown" while it shakes hands). */
function handshakeDone(socket: TLSSocket): boolean {
  const protocol = socket.getProtocol();
  return protocol !== null && protocol !== "unknown";
}

/** Node's own `Agent.addRequest` (not in @types/node) of `proto`, bound to `agent`. */
function agentAdd(proto: http.Agent, agent: http.Agent): AddRequest {
  return (proto as unknown as { addRequest: AddRequest }).addRequest.bind(agent);
}

/** A keep-alive `http.Agent` whose requests made inside {@link throughGate} are held back by the gate. */
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
  /**
   * One request to the channel's API through a gated agent: one that finds the gate in the async
   * context, or, with `routed`, `gatedAgentFor(gate, …)`.
   */
  call: (gate: WriteGate) => Promise<T>;
  /** `call` routes its request through {@link gatedAgentFor} (see {@link throughGate}). */
  routed?: boolean;
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
 * stage; docs/durability.md). Each attempt's request gets a connected socket, then waits for
 * `progress.beforeWrite` before a byte is written. An attempt that failed before its request
 * was written (connection refused, DNS, a reset while connecting: no mark was made) or that the
 * API refused (429, 5xx: retried; other errors: final) was not delivered; one that was marked
 * and not written (the connection lost, or the request aborted, while the mark was written) or
 * refused goes through `progress.notWritten`, which makes the row resumable again. A connection
 * that failed after the request was written is never retried.
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
    const r = await throughGate(o.ungated ? undefined : before, o.call, o.routed === true);
    const { gate } = r;
    // A failed call's request never goes out later; its outcome is read once the mark (which may
    // still be in flight: the request failed meanwhile) has settled.
    if (!r.ok) gate.cancel?.();
    await gate.marking;
    // The mark failed: the request was destroyed before a byte of it was written.
    if (gate.hookError !== undefined) throw finalError(final, gate.hookError);
    if (r.ok) return r.value;
    const { error } = r;
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
