import type { BotConfig } from "../../config/schema.js";
import type { IncomingMessage } from "../../core/types.js";
import type { TwoGisReview } from "./client.js";

/** Thread key (and dedupe key) of a review: `2gis:review:<review_id>` (docs/architecture.md, thread keys). */
export function reviewKey(reviewId: string): string {
  return `2gis:review:${reviewId}`;
}

/**
 * Why a review gets no answer by configuration, or null when it should be answered: its rating
 * is not in `2gis.answer_ratings`, or it has no text and `2gis.answer_empty` is false.
 */
export function skipReason(review: TwoGisReview, ratings: ReadonlySet<number>, answerEmpty: boolean): string | null {
  if (!ratings.has(review.rating)) return `rating ${review.rating} is not in answer_ratings`;
  if (!review.text.trim() && !answerEmpty) return "review has no text (answer_empty: false)";
  return null;
}

/**
 * Translates a review into the pipeline's message (channels translate, the core decides:
 * docs/architecture.md). `chatId` and `target.review_id` are the review id the answer is posted
 * to; an empty review's text is a short marker so the model still gets a user turn.
 * @param nowMs when it was received, epoch ms UTC
 */
export function toIncoming(bot: BotConfig, review: TwoGisReview, nowMs: number): IncomingMessage {
  const text = review.text.trim() ? review.text : `[rating ${review.rating}/5, no text]`;
  return {
    bot: bot.name,
    channel: "2gis",
    kind: "reviews",
    chatId: review.id,
    userId: null,
    userName: review.authorName,
    text,
    threadKey: reviewKey(review.id),
    dedupeKey: reviewKey(review.id),
    channelMessageId: review.id,
    target: { review_id: review.id, branch_id: review.branchId, rating: review.rating, date_created: review.dateCreated },
    vars: {
      rating: String(review.rating),
      review_text: review.text,
      author_name: review.authorName ?? "",
      branch_id: review.branchId,
      review_id: review.id,
      review_date: review.dateCreated,
    },
    receivedMs: nowMs,
  };
}
