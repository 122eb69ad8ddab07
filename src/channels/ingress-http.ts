import type http from "node:http";
import type { Logger } from "pino";
import { readBody } from "../http/server.js";

/** Seconds a sender is asked to wait (`Retry-After` of a 503) when a pushed update could not be recorded. */
export const RETRY_AFTER_S = 5;

/** Largest pushed body accepted by default, bytes (1 MiB). */
export const MAX_PUSHED_BODY_BYTES = 1 << 20;

/** An answer that ends a pushed request before the update is recorded: HTTP status and plain-text body. */
export interface PushedAnswer {
  status: number;
  body: string;
}

/**
 * What a channel tells {@link servePushed} about the updates pushed to it (a Telegram webhook
 * call, a VK Callback API call): the channel-specific checks, how an update is recognised and
 * recorded, and the words of its log lines.
 * @typeParam T the update as the sender posts it (Bot API `Update`, VK Callback API event)
 */
export interface PushedChannel<T> {
  logger: Logger;
  /** Largest body accepted, bytes; a larger one is answered 413 before it is parsed. */
  maxBodyBytes: number;
  /**
   * Checks the request before its body is read (Telegram's `X-Telegram-Bot-Api-Secret-Token`
   * header): false answers 403. The channel logs the refusal.
   */
  authorize?(req: http.IncomingMessage): boolean;
  /** The parsed JSON body as an update, or undefined when it is none (answered 400 and logged with {@link notAnUpdate}). */
  parse(json: unknown): T | undefined;
  /** Log line (warn, with `bytes`) for a body that is no JSON or no update. */
  notAnUpdate: string;
  /**
   * Checks the parsed update before it is recorded: an answer ends the request there (VK: another
   * community or a wrong `secret` → 403, `confirmation` → the configured string). The channel
   * logs what it refuses.
   */
  screen?(update: T, req: http.IncomingMessage): PushedAnswer | undefined;
  /**
   * Records the update. Resolves true only for a positive result that allows acknowledging it
   * (recorded, a duplicate, ignored by rule...); anything else, thrown or not, answers 503.
   */
  receive(update: T): Promise<boolean>;
  /** Fields naming the update in the error line when recording threw (`update_id`; `event_id`, `type`). */
  describe(update: T): Record<string, unknown>;
  /** Log line (error, with `err`) when recording threw. */
  notRecorded: string;
  /** Body of the 503 answer. */
  unavailableBody: string;
}

/**
 * Serves one pushed update on the instance's HTTP ingress, the part every channel shares. In
 * order: a method other than `POST` → 405; {@link PushedChannel.authorize} refused → 403; a body
 * over {@link PushedChannel.maxBodyBytes} → 413; a body that is no JSON or no update → 400 (the
 * sender would resend the same body for ever, so it is logged and dropped);
 * {@link PushedChannel.screen}'s answer, when it gives one; then 200 `ok` only once
 * {@link PushedChannel.receive} resolved true, else 503 with `Retry-After: 5`, whatever the
 * error, so the sender sends the update again. Every answer is `text/plain; charset=utf-8`.
 */
export async function servePushed<T>(req: http.IncomingMessage, res: http.ServerResponse, channel: PushedChannel<T>): Promise<void> {
  if (req.method !== "POST") return answer(res, 405, "method not allowed");
  if (channel.authorize && !channel.authorize(req)) return answer(res, 403, "forbidden");
  const body = await readBody(req, channel.maxBodyBytes);
  if (!body) return answer(res, 413, "too large");
  const update = parseUpdate(body, channel);
  if (update === undefined) {
    channel.logger.warn({ bytes: body.length }, channel.notAnUpdate);
    return answer(res, 400, "bad request");
  }
  const early = channel.screen?.(update, req);
  if (early) return answer(res, early.status, early.body);
  let acknowledged = false;
  try {
    acknowledged = await channel.receive(update);
  } catch (error) {
    channel.logger.error({ err: error, ...channel.describe(update) }, channel.notRecorded);
  }
  if (!acknowledged) return answer(res, 503, channel.unavailableBody, { "retry-after": String(RETRY_AFTER_S) });
  answer(res, 200, "ok");
}

/** The body as the channel's update, or undefined when it is not JSON or not an update. */
function parseUpdate<T>(body: Buffer, channel: PushedChannel<T>): T | undefined {
  try {
    return channel.parse(JSON.parse(body.toString("utf8")));
  } catch {
    return undefined;
  }
}

/** Ends the response with a plain-text body. */
function answer(res: http.ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", ...headers }).end(body);
}
