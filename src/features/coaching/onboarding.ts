import type { ImageRef } from "../../core/images.js";
import type { Button, PipelineContext } from "../../core/types.js";
import type { CoachingUser } from "../../storage/coaching.js";
import type { CoachingContext } from "./context.js";
import { goalKind } from "./facts.js";
import { looksLikeInjection, type ParsedGoal, parseGoal } from "./goals.js";
import { reply, sendWithButtons, setPromptSection } from "./reply.js";
import { formatClock, parseClock } from "./rules.js";
import { coordinatesFromText, zoneFromAnswer, zoneFromLocation } from "./zones.js";

// Onboarding (docs/coaching.md, "Onboarding"): one question per message, the answers kept in
// `coaching_users.draft` and the step in `coaching_users.step`, so a restart resumes where it was.

/** Onboarding steps, in order. */
const STEPS = ["name", "timezone", "goals", "goals_phrase", "goals_confirm", "remind", "photos", "profile", "confirm"] as const;
type Step = (typeof STEPS)[number];

/** Answers collected during onboarding (stored as `coaching_users.draft`). */
interface Draft {
  name?: string;
  timezone?: string;
  goals?: ParsedGoal[];
  /** The model's wordings of `goals`, offered at the `goals_confirm` step. */
  suggested?: ParsedGoal[];
  remind_at?: number | null;
  /** The mood board: picture references as the channel gave them (Bot API `file_id`s on Telegram). */
  photos?: ImageRef[];
}

const YES = /^(да|ага|верно|подтверждаю|yes|y|ok|ок|confirm|\/confirm)[.!]?$/i;
const EDIT = /^(изменить|нет|заново|edit|no|\/edit)[.!]?$/i;
const KEEP = /^(мои|свои|оставить|нет|mine|keep|no)[.!]?$/i;
const FINISHED = /^(готово|всё|все|хватит|done|finished|that'?s all)[.!]?$/i;
const NAME = /^[\p{L}][\p{L}'’ -]{0,39}$/u;

/**
 * One message of a user still onboarding (`status: onboarding`): checks the answer to the
 * current step, stores it and asks the next question. The goal wordings and the profile are the
 * model's, through `next` (the pipeline, charged like any answer); every other step is a free reply.
 */
export async function onboarding(c: CoachingContext, ctx: PipelineContext, u: CoachingUser, text: string, next: () => Promise<void>): Promise<void> {
  const { bot, cfg, repo, t } = c;
  const step = (u.step ?? "name") as Step;
  const draft = draftOf(u);
  const skip = /^\/skip\b/i.test(text);
  switch (step) {
    case "name":
      if (skip || !NAME.test(text) || text.split(/\s+/).length > 3 || looksLikeInjection(text)) return reply(c, ctx, t("bad_name"));
      return moveTo(c, ctx, u, "timezone", { ...draft, name: text });
    case "timezone": {
      // A shared location (or coordinates, as a stored location reads) maps to the zone there.
      const point = ctx.msg.location ?? coordinatesFromText(text);
      const zone = skip ? bot.timezone : point ? zoneFromLocation(point.latitude, point.longitude) : zoneFromAnswer(text);
      if (!zone) return reply(c, ctx, t("bad_timezone"));
      if (point && !skip) {
        await repo.updateUser(bot.name, u.user_id, { step: "goals", draft: JSON.stringify({ ...draft, timezone: zone }) });
        return reply(c, ctx, `${t("location_zone", { zone })}\n\n${ask(c, "goals")}`);
      }
      return moveTo(c, ctx, u, "goals", { ...draft, timezone: zone });
    }
    case "goals": {
      const goals = parseGoals(c, text);
      if (skip || !goals) return reply(c, ctx, t("bad_goals"));
      if (!cfg.phrase_goals) return moveTo(c, ctx, u, "remind", { ...draft, goals });
      await repo.updateUser(bot.name, u.user_id, { step: "goals_phrase", draft: JSON.stringify({ ...draft, goals }) });
      return phraseGoals(c, ctx, u, { ...draft, goals }, next);
    }
    case "goals_phrase":
      // A restart while the model was phrasing the goals: ask it again.
      return phraseGoals(c, ctx, u, draft, next);
    case "goals_confirm": {
      if (YES.test(text) && draft.suggested) return moveTo(c, ctx, u, "remind", { ...draft, goals: draft.suggested, suggested: undefined });
      if (KEEP.test(text)) return moveTo(c, ctx, u, "remind", { ...draft, suggested: undefined });
      return reply(c, ctx, t("goals_suggested"), suggestButtons(c));
    }
    case "remind": {
      const at = skip ? null : parseClock(text);
      if (!skip && at === null) return reply(c, ctx, t("bad_remind"));
      return moveTo(c, ctx, u, "photos", { ...draft, remind_at: at });
    }
    case "photos": {
      if (ctx.msg.images?.length) {
        const photos = [...(draft.photos ?? []), ...ctx.msg.images].slice(0, 10);
        await repo.updateUser(bot.name, u.user_id, { draft: JSON.stringify({ ...draft, photos }) });
        return reply(c, ctx, t("photo_saved", { count: photos.length }));
      }
      if (!skip && !FINISHED.test(text)) return reply(c, ctx, t("ask_photos"));
      await repo.updateUser(bot.name, u.user_id, { step: "profile" });
      return writeProfile(c, ctx, u, draft, next);
    }
    case "profile":
      // A restart while the profile was being written: write it again.
      return writeProfile(c, ctx, u, draft, next);
    case "confirm":
      if (EDIT.test(text)) return moveTo(c, ctx, u, "name", {});
      if (!YES.test(text)) return reply(c, ctx, t("confirm_profile"), confirmButtons(c));
      for (const g of draft.goals ?? []) await repo.addGoal({ bot: bot.name, user_id: u.user_id, ...g });
      await repo.updateUser(bot.name, u.user_id, {
        status: "active",
        step: null,
        name: draft.name ?? null,
        timezone: draft.timezone ?? bot.timezone,
        remind_at: draft.remind_at ?? null,
      });
      return reply(c, ctx, t("onboarding_done"));
  }
}

/** The answers so far. */
function draftOf(u: CoachingUser): Draft {
  return u.draft ? (JSON.parse(u.draft) as Draft) : {};
}

/** The question of `step`. */
function ask(c: CoachingContext, step: Step): string {
  const { t } = c;
  return {
    name: t("ask_name"),
    timezone: t("ask_timezone", { zone: c.bot.timezone }),
    goals: t("ask_goals"),
    goals_phrase: t("ask_goals"),
    goals_confirm: t("goals_suggested"),
    remind: t("ask_remind"),
    photos: t("ask_photos"),
    profile: t("confirm_profile"),
    confirm: t("confirm_profile"),
  }[step];
}

/** Take / Keep mine, under the model's wordings of the goals. */
function suggestButtons(c: CoachingContext): Button[][] {
  const { en } = c;
  return [
    [
      { label: en ? "✅ Take these" : "✅ Взять", data: en ? "yes" : "да" },
      { label: en ? "✏️ Keep mine" : "✏️ Оставить мои", data: en ? "mine" : "мои" },
    ],
  ];
}

/** Confirm / Edit, under the profile. */
function confirmButtons(c: CoachingContext): Button[][] {
  const { en } = c;
  return [
    [
      { label: en ? "✅ Confirm" : "✅ Подтвердить", data: en ? "yes" : "да" },
      { label: en ? "✏️ Edit" : "✏️ Изменить", data: en ? "edit" : "изменить" },
    ],
  ];
}

/**
 * The model suggests wordings of the goals (charged like any answer, through the pipeline:
 * the user sees its answer), then Take / Keep mine. When it cannot (balance, failure) or its
 * answer is not one goal per line, the user's own goals stand and onboarding moves on.
 */
async function phraseGoals(c: CoachingContext, ctx: PipelineContext, u: CoachingUser, draft: Draft, next: () => Promise<void>): Promise<void> {
  const goals = (draft.goals ?? []).map((g) => `${g.title} (${goalKind(c, g)})`).join("; ");
  setPromptSection(ctx, c.t("goals_request", { goals }));
  await next();
  if (ctx.outcome === "answered" && ctx.completion) {
    const lines = ctx.completion.text
      .split(/\n+/)
      .map((l) => l.replace(/^\s*(?:[-•*]|\d+[.)])\s*/, "").trim())
      .filter(Boolean);
    const suggested = lines.map(parseGoal);
    // Goals, not chatter: as many lines as the user's goals, each naming how often.
    if (lines.length === draft.goals?.length && suggested.every((g) => g !== null) && lines.every(namesFrequency)) {
      await c.repo.updateUser(c.bot.name, u.user_id, { step: "goals_confirm", draft: JSON.stringify({ ...draft, suggested }) });
      return sendWithButtons(ctx, c.t("goals_suggested"), suggestButtons(c));
    }
    ctx.log.info("the model's goal wordings were not one goal per line; the user's own stand");
  } else if (ctx.outcome !== "no_balance" && ctx.outcome !== "failed") {
    // Interrupted by a stop (resumed at the next start at this step) or answered elsewhere.
    return;
  }
  await moveTo(c, ctx, u, "remind", draft);
}

/** Stores `step` and `draft`, then asks the step's question. */
async function moveTo(c: CoachingContext, ctx: PipelineContext, u: CoachingUser, step: Step, draft: Draft): Promise<void> {
  await c.repo.updateUser(c.bot.name, u.user_id, { step, draft: JSON.stringify(draft) });
  await reply(c, ctx, ask(c, step));
}

/** The model writes the profile (charged like any answer); then Confirm / Edit. */
async function writeProfile(c: CoachingContext, ctx: PipelineContext, u: CoachingUser, draft: Draft, next: () => Promise<void>): Promise<void> {
  const answers = JSON.stringify({
    name: draft.name,
    timezone: draft.timezone,
    goals: draft.goals?.map((g) => `${g.title} (${goalKind(c, g)})`),
    reminder: draft.remind_at != null ? formatClock(draft.remind_at) : null,
    mood_board_photos: draft.photos?.length ?? 0,
  });
  setPromptSection(ctx, c.t("profile_request", { answers }));
  // The mood board goes with the profile request, for vision-capable models (llm.vision).
  if (draft.photos?.length) ctx.msg.images = [...draft.photos];
  await next();
  if (ctx.outcome === "answered" && ctx.completion) {
    await c.repo.updateUser(c.bot.name, u.user_id, { step: "confirm", profile: ctx.completion.text.slice(0, 4000) });
    await sendWithButtons(ctx, c.t("confirm_profile"), confirmButtons(c));
  }
}

/** One to `max_goals` goals, one per line, or null. */
function parseGoals(c: CoachingContext, text: string): ParsedGoal[] | null {
  const lines = text
    .split(/\n+/)
    .map((l) => l.trim())
    .filter(Boolean);
  const goals = lines.map(parseGoal);
  return lines.length && lines.length <= c.cfg.max_goals && goals.every((g) => g !== null) ? (goals as ParsedGoal[]) : null;
}

/** True when a goal line says how often: "каждый день", "ежедневно", "3 раза в неделю", "daily", "3 times a week". */
function namesFrequency(line: string): boolean {
  return /\d\s*(?:раз|times?|x|×)|кажд\p{L}*\s+день|ежедневн|daily|every\s*day/iu.test(line);
}
