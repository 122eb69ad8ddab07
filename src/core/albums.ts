import type { Store } from "../storage/index.js";
import { decodeMeta, type MessageRow } from "../storage/messages.js";
import type { Middleware } from "../lib/compose.js";
import { storedImages, type ImageRef } from "./images.js";
import { sleep } from "../lib/retry.js";
import type { IncomingMessage, PipelineContext } from "./types.js";

/** How long an album stays open after its newest part arrived, ms. */
export const ALBUM_WINDOW_MS = 1000;

/** Parts of one album are looked for this far around a part's receive time, ms. */
const ALBUM_SPAN_MS = 10 * 60_000;

/** The stored parts of the album a message belongs to, oldest first. */
export interface Album {
  /** The part that answers for the whole album: the first one not `filtered`. */
  head: MessageRow | undefined;
  parts: MessageRow[];
}

/**
 * Reads the stored parts of a message's album (same bot, thread and `group`, i.e. Telegram
 * `media_group_id`), by id.
 */
export async function readAlbum(store: Pick<Store, "messages">, msg: Pick<IncomingMessage, "bot" | "threadKey" | "group" | "receivedMs">): Promise<Album> {
  const rows = await store.messages.inThread(msg.bot, msg.threadKey, msg.receivedMs - ALBUM_SPAN_MS, msg.receivedMs + ALBUM_SPAN_MS);
  const parts = rows.filter((r) => groupOf(r) === msg.group);
  return { head: parts.find((p) => p.status !== "filtered"), parts };
}

/** The album as one message: the parts' texts joined by new lines, their pictures in order. */
export function mergeAlbum(parts: MessageRow[]): { text: string; images: ImageRef[] } {
  const text = parts
    .map((p) => p.text.trim())
    .filter(Boolean)
    .join("\n");
  return { text, images: parts.flatMap((p) => storedImages(decodeMeta(p.meta).images) ?? []) };
}

/** Options of {@link albumStage}. */
export interface AlbumStageDeps {
  store: Store;
  /** Clock, epoch ms UTC. */
  now: () => number;
  /** @defaultValue {@link ALBUM_WINDOW_MS} */
  windowMs?: number;
}

/**
 * The pipeline stage that answers an album once (Telegram sends each picture of an album as its
 * own message with the same `media_group_id`). Every part is recorded as it arrives, so a crash
 * loses none; the answer waits here, in the thread's queue, until no part has come for
 * `windowMs`. The head (the first part not filtered) then takes every part's pictures and text,
 * marks the other parts `skipped` (error `album part of message <id>`) and goes on; the other
 * parts stop here when their turn comes. A part that arrives after its album was answered is
 * answered on its own. After a crash, recovery resumes the parts in order and the same happens
 * without waiting. Messages without `group` pass straight through.
 */
export function albumStage(deps: AlbumStageDeps): Middleware<PipelineContext> {
  const windowMs = deps.windowMs ?? ALBUM_WINDOW_MS;
  return async function album(ctx, next) {
    const msg = ctx.msg;
    if (!msg.group) return next();
    let album = await readAlbum(deps.store, msg);
    // Not found among the parts (a clock far off, a meta rewritten): answer it as it is.
    if (!album.parts.some((p) => p.id === ctx.id)) return next();
    if (album.head && album.head.id !== ctx.id) {
      const me = album.parts.find((p) => p.id === ctx.id);
      if (me?.status === "skipped") {
        ctx.outcome = "skipped";
        ctx.log.debug({ album_head: album.head.id }, "album part answered with the album's first part");
        return;
      }
      ctx.log.info({ album_head: album.head.id }, "album part arrived after its album was answered; answered on its own");
      return next();
    }
    // The head: wait until the album is complete (no new part for windowMs), at most 5 windows.
    const started = Date.now();
    for (;;) {
      const newest = Math.max(...album.parts.map((p) => p.created_ms));
      const wait = newest + windowMs - deps.now();
      if (wait <= 0 || Date.now() - started >= 5 * windowMs) break;
      await sleep(Math.min(wait, windowMs));
      album = await readAlbum(deps.store, msg);
    }
    const others = album.parts.filter((p) => p.id !== ctx.id);
    for (const p of others)
      await deps.store.messages.setStatus(p.id, "skipped", {
        error: `album part of message ${ctx.id}`,
        from: ["received", "failed", "no_balance", "expired"],
        fence: ctx.fence,
      });
    const merged = mergeAlbum(album.parts);
    msg.text = merged.text;
    msg.images = merged.images;
    ctx.log.info({ parts: album.parts.length, images: merged.images.length }, "album gathered into one message");
    await next();
  };
}

function groupOf(row: MessageRow): string | undefined {
  const g = decodeMeta(row.meta).group;
  return typeof g === "string" ? g : undefined;
}
