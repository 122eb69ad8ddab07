import type { Logger } from "pino";
import type { BotConfig } from "../../config/schema.js";
import type { Middleware } from "../../lib/compose.js";
import { durationMs } from "../../lib/duration.js";
import type { Feature } from "../../core/pipeline.js";
import type { ImageRef } from "../../core/images.js";
import { recordThroughOutage, sendProactive, type WrittenText } from "../../core/proactive.js";
import { sleep as realSleep } from "../../lib/retry.js";
import type { AcceptedUpdates, Button, ChannelSender, OutgoingDocument, PipelineContext } from "../../core/types.js";
import { ChannelError, describeError } from "../../errors.js";
import type { LlmClient, ToolDefinition } from "../../llm/client.js";
import { formatCredits } from "../../storage/balance.js";
import { loadPrompt, renderPrompt } from "../../llm/prompt.js";
import type { CoachingUser, GoalRow } from "../../storage/coaching.js";
import type { Store } from "../../storage/index.js";
import type { OwnerFence } from "../../storage/owners.js";
import type { CoachingConfig } from "../../config/features.js";
import { goalFacts, looksLikeInjection, parseGoal, pauseRanges, weekFigures, type GoalFacts, type ParsedGoal } from "./goals.js";
import type { ToolEffectKey } from "../../storage/tool-effects.js";
import { addDays, checkinDay, checkinPoints, dueInstant, formatClock, levelFor, parseClock, weekStart, zonedInstant, type Day } from "./rules.js";
import { fill, TEXTS, type TextKey } from "./texts.js";
import { coordinatesFromText, zoneFromAnswer, zoneFromLocation } from "./zones.js";

/** Dependencies of the coaching feature (see `FeatureDeps`). */
export interface CoachingDeps {
  store: Store;
  logger: Logger;
  /** Clock, epoch ms UTC: days, reminders and the schedule run by it. */
  now: () => number;
  /** Waits by that clock. @defaultValue setTimeout */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** The bot's channel, for proactive messages; without it no reminders are sent. */
  channel?: ChannelSender;
  /** The bot's model, for model-written reminders and weekly words; without it they are templates. */
  llm?: LlmClient;
  /** Scale-out: this instance's ownership of the bot; proactive sends are conditional on it. */
  fence?: OwnerFence;
}

/** What one scheduler pass did. */
export interface TickResult {
  reminders: number;
  weekly: number;
  failed: number;
}

/** The coaching feature: a gate, the `log_progress` tool, and the reminder schedule. */
export interface CoachingFeature extends Feature {
  /** One scheduler pass at the clock's now: sends due reminders and weekly summaries once each. */
  tick(): Promise<TickResult>;
}

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
 * What coaching takes from channels: a shared location sets the time zone; `/start` and `/help`
 * are onboarding and the command list; a block or unblock stops or resumes scheduled messages.
 */
export const COACHING_ACCEPTS: AcceptedUpdates = { locations: true, startHelp: true, membership: true };

/**
 * `features.coaching` (seed 003, docs/coaching.md). The gate handles onboarding and the
 * commands itself (free replies, no model call); other messages go to the model with the
 * user's numbers in `{{coaching}}` and the `log_progress` tool. Inside `bots start` a scheduler
 * sends each user one reminder per local day and one weekly summary per week, each claimed
 * first by a delivery row.
 */
export function coachingFeature(bot: BotConfig, cfg: CoachingConfig, deps: CoachingDeps): CoachingFeature {
  const repo = deps.store.coaching;
  const log = deps.logger.child({ feature: "coaching" });
  const sleep = deps.sleep ?? realSleep;
  const abort = new AbortController();
  const dayStart = parseClock(cfg.day_starts_at)!;
  const catchUpMs = durationMs(cfg.reminders.catch_up)!;
  const weeklyAt = parseClock(cfg.weekly.at)!;
  let loop: Promise<void> | undefined;

  const t = (key: TextKey, vars?: Record<string, string | number>) => fill(cfg.texts[key] ?? TEXTS[cfg.language][key], vars);
  const today = (u: Pick<CoachingUser, "timezone" | "day_starts_at">) => checkinDay(deps.now(), u.timezone, u.day_starts_at);
  const en = cfg.language === "en";

  /** Sends a free reply, with rows of buttons (or a file) with it when given, and marks the message answered. */
  const reply = async (ctx: PipelineContext, text: string, buttons?: Button[][], document?: OutgoingDocument) => {
    await sendWithButtons(ctx, text, buttons, document);
    await deps.store.messages.setStatus(ctx.id!, "answered", { from: ["received", "failed", "expired", "no_balance"], fence: ctx.fence });
    ctx.outcome = "answered";
  };

  const sendWithButtons = async (ctx: PipelineContext, text: string, buttons?: Button[][], document?: OutgoingDocument) => {
    // Telegram: an inline_keyboard under the text; a document goes as sendDocument with the text as caption.
    await ctx.sendFreeReply!({ text, ...(buttons?.length ? { buttons } : {}), ...(document ? { document } : {}) });
  };
  const confirmButtons = (): Button[][] => [
    [
      { label: en ? "✅ Confirm" : "✅ Подтвердить", data: en ? "yes" : "да" },
      { label: en ? "✏️ Edit" : "✏️ Изменить", data: en ? "edit" : "изменить" },
    ],
  ];

  const draftOf = (u: CoachingUser): Draft => (u.draft ? (JSON.parse(u.draft) as Draft) : {});
  const goalKind = (g: Pick<GoalRow, "kind" | "target">) =>
    g.kind === "daily" ? (en ? "daily" : "каждый день") : en ? `${g.target}×/week` : `${g.target} р/нед`;
  const streakText = (f: GoalFacts) =>
    f.goal.kind === "daily" ? (en ? `${f.streak.current} d` : `${f.streak.current} дн.`) : en ? `${f.streak.current} wk` : `${f.streak.current} нед.`;

  const factsOf = async (u: CoachingUser) => {
    const day = today(u);
    const [goals, checkins, pauses, points] = await Promise.all([
      repo.goals(bot.name, u.user_id),
      repo.checkins(bot.name, u.user_id),
      repo.pauses(bot.name, u.user_id),
      repo.points(bot.name, u.user_id),
    ]);
    // Goals are numbered among those not archived (paused ones keep their number), everywhere.
    const active = goals.filter((g) => g.status !== "archived");
    return { day, goals, active, checkins, pauses: pauseRanges(pauses), points, facts: goalFacts(active, checkins, pauseRanges(pauses), day) };
  };

  /** The numbers the model gets; it never computes them. */
  const modelFacts = async (u: CoachingUser): Promise<string> => {
    const f = await factsOf(u);
    const lvl = levelFor(f.points);
    const lines = f.facts.map(
      (x, i) =>
        `${i + 1}. "${x.goal.title}" (${x.goal.kind === "daily" ? "daily" : `${x.goal.target} days a week`}${x.goal.status === "paused" ? ", paused" : ""}): streak ${x.streak.current} ${x.goal.kind === "daily" ? "days" : "weeks"} (best ${x.streak.best}), freezes held ${x.streak.freezes}, days this week ${x.weekDays}, done today: ${x.doneToday ? "yes" : "no"}`,
    );
    return [
      `Coaching facts (computed by the bot; use them as given, do not recompute):`,
      `User: ${u.name ?? "?"}; time zone ${u.timezone}; today is ${f.day}.`,
      `Points ${f.points}, level ${lvl.level} (next level at ${lvl.next}).`,
      lines.length ? `Goals:\n${lines.join("\n")}` : "No active goals.",
      u.profile ? `Profile: ${u.profile}` : "",
      `To record progress the user reports, call log_progress.`,
    ]
      .filter(Boolean)
      .join("\n");
  };

  const checkIn = async (u: CoachingUser, goal: GoalRow, day: Day, source: string, note?: string | null, effect?: ToolEffectKey) => {
    const row = await repo.addCheckin({ bot: bot.name, user_id: u.user_id, goal_id: goal.id, day, source, note, pointsFor: checkinPoints, effect });
    const f = await factsOf(u);
    const gf = goalFacts([goal], f.checkins, f.pauses, f.day)[0]!;
    return { row, total: f.points, level: levelFor(f.points).level, streak: streakText(gf) };
  };

  /** The day a `/done` argument names: today, `yesterday`/`вчера`, or a date within the last 7 days. */
  const backfillDay = (u: CoachingUser, word: string | undefined): Day | null | "range" => {
    const d = today(u);
    if (!word) return d;
    if (/^(yesterday|вчера)$/i.test(word)) return addDays(d, -1);
    let m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(word);
    let day: Day | null = m ? word : null;
    m = /^(\d{1,2})\.(\d{1,2})$/.exec(word);
    if (m) {
      const cand = `${d.slice(0, 4)}-${m[2]!.padStart(2, "0")}-${m[1]!.padStart(2, "0")}`;
      day = cand > d ? `${Number(d.slice(0, 4)) - 1}${cand.slice(4)}` : cand;
    }
    if (!day) return null;
    return day <= d && day >= addDays(d, -7) ? day : "range";
  };

  // --- onboarding ---------------------------------------------------------------------------
  const ask = (step: Step): string =>
    ({
      name: t("ask_name"),
      timezone: t("ask_timezone", { zone: bot.timezone }),
      goals: t("ask_goals"),
      goals_phrase: t("ask_goals"),
      goals_confirm: t("goals_suggested"),
      remind: t("ask_remind"),
      photos: t("ask_photos"),
      profile: t("confirm_profile"),
      confirm: t("confirm_profile"),
    })[step];
  const suggestButtons = (): Button[][] => [
    [
      { label: en ? "✅ Take these" : "✅ Взять", data: en ? "yes" : "да" },
      { label: en ? "✏️ Keep mine" : "✏️ Оставить мои", data: en ? "mine" : "мои" },
    ],
  ];

  /**
   * The model suggests wordings of the goals (charged like any answer, through the pipeline:
   * the user sees its answer), then Take / Keep mine. When it cannot (balance, failure) or its
   * answer is not one goal per line, the user's own goals stand and onboarding moves on.
   */
  const phraseGoals = async (ctx: PipelineContext, u: CoachingUser, draft: Draft, next: () => Promise<void>) => {
    const goals = (draft.goals ?? []).map((g) => `${g.title} (${goalKind(g)})`).join("; ");
    ctx.promptSections.push({ name: "coaching", text: t("goals_request", { goals }) });
    await next();
    if (ctx.outcome === "answered" && ctx.completion) {
      const lines = ctx.completion.text
        .split(/\n+/)
        .map((l) => l.replace(/^\s*(?:[-•*]|\d+[.)])\s*/, "").trim())
        .filter(Boolean);
      const suggested = lines.map(parseGoal);
      // Goals, not chatter: as many lines as the user's goals, each naming how often.
      if (lines.length === draft.goals?.length && suggested.every((g) => g !== null) && lines.every(namesFrequency)) {
        await repo.updateUser(bot.name, u.user_id, { step: "goals_confirm", draft: JSON.stringify({ ...draft, suggested }) });
        return sendWithButtons(ctx, t("goals_suggested"), suggestButtons());
      }
      ctx.log.info("the model's goal wordings were not one goal per line; the user's own stand");
    } else if (ctx.outcome !== "no_balance" && ctx.outcome !== "failed") {
      // Interrupted by a stop (resumed at the next start at this step) or answered elsewhere.
      return;
    }
    await moveTo(ctx, u, "remind", draft);
  };

  const moveTo = async (ctx: PipelineContext, u: CoachingUser, step: Step, draft: Draft) => {
    await repo.updateUser(bot.name, u.user_id, { step, draft: JSON.stringify(draft) });
    await reply(ctx, ask(step));
  };

  /** The model writes the profile (charged like any answer); then Confirm / Edit. */
  const writeProfile = async (ctx: PipelineContext, u: CoachingUser, draft: Draft, next: () => Promise<void>) => {
    const answers = JSON.stringify({
      name: draft.name,
      timezone: draft.timezone,
      goals: draft.goals?.map((g) => `${g.title} (${goalKind(g)})`),
      reminder: draft.remind_at != null ? formatClock(draft.remind_at) : null,
      mood_board_photos: draft.photos?.length ?? 0,
    });
    ctx.promptSections.push({ name: "coaching", text: t("profile_request", { answers }) });
    // The mood board goes with the profile request, for vision-capable models (llm.vision).
    if (draft.photos?.length) ctx.msg.images = [...draft.photos];
    await next();
    if (ctx.outcome === "answered" && ctx.completion) {
      await repo.updateUser(bot.name, u.user_id, { step: "confirm", profile: ctx.completion.text.slice(0, 4000) });
      await sendWithButtons(ctx, t("confirm_profile"), confirmButtons());
    }
  };

  const onboarding = async (ctx: PipelineContext, u: CoachingUser, text: string, next: () => Promise<void>) => {
    const step = (u.step ?? "name") as Step;
    const draft = draftOf(u);
    const skip = /^\/skip\b/i.test(text);
    switch (step) {
      case "name":
        if (skip || !NAME.test(text) || text.split(/\s+/).length > 3 || looksLikeInjection(text)) return reply(ctx, t("bad_name"));
        return moveTo(ctx, u, "timezone", { ...draft, name: text });
      case "timezone": {
        // A shared location (or coordinates, as a stored location reads) maps to the zone there.
        const point = ctx.msg.location ?? coordinatesFromText(text);
        const zone = skip ? bot.timezone : point ? zoneFromLocation(point.latitude, point.longitude) : zoneFromAnswer(text);
        if (!zone) return reply(ctx, t("bad_timezone"));
        if (point && !skip) {
          await repo.updateUser(bot.name, u.user_id, { step: "goals", draft: JSON.stringify({ ...draft, timezone: zone }) });
          return reply(ctx, `${t("location_zone", { zone })}\n\n${ask("goals")}`);
        }
        return moveTo(ctx, u, "goals", { ...draft, timezone: zone });
      }
      case "goals": {
        const goals = parseGoals(text);
        if (skip || !goals) return reply(ctx, t("bad_goals"));
        if (!cfg.phrase_goals) return moveTo(ctx, u, "remind", { ...draft, goals });
        await repo.updateUser(bot.name, u.user_id, { step: "goals_phrase", draft: JSON.stringify({ ...draft, goals }) });
        return phraseGoals(ctx, u, { ...draft, goals }, next);
      }
      case "goals_phrase":
        // A restart while the model was phrasing the goals: ask it again.
        return phraseGoals(ctx, u, draft, next);
      case "goals_confirm": {
        if (YES.test(text) && draft.suggested) return moveTo(ctx, u, "remind", { ...draft, goals: draft.suggested, suggested: undefined });
        if (KEEP.test(text)) return moveTo(ctx, u, "remind", { ...draft, suggested: undefined });
        return reply(ctx, t("goals_suggested"), suggestButtons());
      }
      case "remind": {
        const at = skip ? null : parseClock(text);
        if (!skip && at === null) return reply(ctx, t("bad_remind"));
        return moveTo(ctx, u, "photos", { ...draft, remind_at: at });
      }
      case "photos": {
        if (ctx.msg.images?.length) {
          const photos = [...(draft.photos ?? []), ...ctx.msg.images].slice(0, 10);
          await repo.updateUser(bot.name, u.user_id, { draft: JSON.stringify({ ...draft, photos }) });
          return reply(ctx, t("photo_saved", { count: photos.length }));
        }
        if (!skip && !FINISHED.test(text)) return reply(ctx, t("ask_photos"));
        await repo.updateUser(bot.name, u.user_id, { step: "profile" });
        return writeProfile(ctx, u, draft, next);
      }
      case "profile":
        // A restart while the profile was being written: write it again.
        return writeProfile(ctx, u, draft, next);
      case "confirm":
        if (EDIT.test(text)) return moveTo(ctx, u, "name", {});
        if (!YES.test(text)) return reply(ctx, t("confirm_profile"), confirmButtons());
        for (const g of draft.goals ?? []) await repo.addGoal({ bot: bot.name, user_id: u.user_id, ...g });
        await repo.updateUser(bot.name, u.user_id, {
          status: "active",
          step: null,
          name: draft.name ?? null,
          timezone: draft.timezone ?? bot.timezone,
          remind_at: draft.remind_at ?? null,
        });
        return reply(ctx, t("onboarding_done"));
    }
  };

  /** One to `max_goals` goals, one per line, or null. */
  const parseGoals = (text: string): ParsedGoal[] | null => {
    const lines = text
      .split(/\n+/)
      .map((l) => l.trim())
      .filter(Boolean);
    const goals = lines.map(parseGoal);
    return lines.length && lines.length <= cfg.max_goals && goals.every((g) => g !== null) ? (goals as ParsedGoal[]) : null;
  };

  // --- commands -----------------------------------------------------------------------------
  const goalByNumber = (active: GoalRow[], arg: string | undefined): GoalRow | undefined => {
    if (arg && /^\d+$/.test(arg)) return active[Number(arg) - 1];
    if (!arg && active.length === 1) return active[0];
    if (arg) return findGoal(active, arg);
    return undefined;
  };

  const command = async (ctx: PipelineContext, u: CoachingUser, name: string, args: string): Promise<void> => {
    const words = args.split(/\s+/).filter(Boolean);
    switch (name) {
      case "start":
        if (u.status === "stopped" || u.status === "blocked") {
          await repo.updateUser(bot.name, u.user_id, { status: "active" });
          return reply(ctx, t("resumed"));
        }
        return reply(ctx, t("help"));
      case "help":
        return reply(ctx, t("help"));
      case "stop":
        await repo.updateUser(bot.name, u.user_id, { status: "stopped" });
        return reply(ctx, t("stopped"));
      case "goals": {
        const f = await factsOf(u);
        if (!f.facts.length) return reply(ctx, t("no_goals"));
        const lines = f.facts.map(
          (x, i) =>
            `${i + 1}. ${x.doneToday ? "✅" : "▫️"} ${x.goal.title} — ${goalKind(x.goal)}${x.goal.status === "paused" ? (en ? " (paused)" : " (пауза)") : ""}, ${streakText(x)}`,
        );
        // Per goal: done today, edit (asks for the new text), pause, archive.
        const buttons = f.facts.map((x, i): Button[] => [
          ...(x.doneToday ? [] : [{ label: `✅ ${i + 1}`, data: `/done ${i + 1}` }]),
          { label: `✏️ ${i + 1}`, data: `/goal edit ${i + 1}` },
          { label: `⏸ ${i + 1}`, data: `/goal pause ${i + 1}` },
          { label: `🗄 ${i + 1}`, data: `/goal archive ${i + 1}` },
        ]);
        return reply(ctx, `${t("goals_header")}\n${lines.join("\n")}`, buttons);
      }
      case "goal": {
        const [sub, ...rest] = words;
        const f = await factsOf(u);
        if (sub === "add") {
          const g = parseGoal(rest.join(" "));
          if (!g) return reply(ctx, t("bad_goals"));
          if (f.active.length >= cfg.max_goals) return reply(ctx, t("too_many_goals", { max: cfg.max_goals }));
          await repo.addGoal({ bot: bot.name, user_id: u.user_id, ...g });
          return reply(ctx, t("goal_added", { goal: `${g.title} (${goalKind(g)})` }));
        }
        const all = f.goals.filter((g) => g.status !== "archived");
        const goal = rest[0] && /^\d+$/.test(rest[0]) ? all[Number(rest[0]) - 1] : undefined;
        if (!goal) return reply(ctx, t("help"));
        if (sub === "edit") {
          // The ✏️ button (no text yet): the next message is the new wording.
          if (rest.length === 1) {
            await repo.updateUser(bot.name, u.user_id, { step: `edit:${goal.id}` });
            return reply(ctx, t("ask_goal_edit", { goal: goal.title }));
          }
          const g = parseGoal(rest.slice(1).join(" "));
          if (!g) return reply(ctx, t("bad_goals"));
          // The goal keeps its id, so its check-ins (the history) stay with it.
          await repo.updateGoal(goal.id, g);
          return reply(ctx, t("goal_added", { goal: `${g.title} (${goalKind(g)})` }));
        }
        if (sub === "pause" || sub === "archive" || sub === "resume") {
          await repo.updateGoal(goal.id, { status: sub === "pause" ? "paused" : sub === "archive" ? "archived" : "active" });
          return replyGoals(ctx, u);
        }
        return reply(ctx, t("help"));
      }
      case "done": {
        const f = await factsOf(u);
        const dayWord = words.find((w) => !/^\d+$/.test(w));
        const day = backfillDay(u, dayWord);
        if (day === "range") return reply(ctx, t("backfill_range"));
        const goal = goalByNumber(f.active, words.find((w) => /^\d+$/.test(w)) ?? (day === null ? dayWord : undefined));
        if (!goal) return reply(ctx, t("which_goal", { list: f.active.map((g, i) => `${i + 1} — ${g.title}`).join("; ") || "—" }));
        const r = await checkIn(u, goal, day ?? f.day, day && day !== f.day ? "backfill" : ctx.msg.button ? "button" : "command");
        return reply(ctx, t("done", { goal: goal.title, day: r.row.day, points: r.row.points, total: r.total, level: r.level, streak: r.streak }));
      }
      case "undo": {
        const last = await repo.undoLast(bot.name, u.user_id);
        if (!last) return reply(ctx, t("nothing_to_undo"));
        const goal = (await repo.goals(bot.name, u.user_id, true)).find((g) => g.id === last.goal_id);
        return reply(ctx, t("undone", { goal: goal?.title ?? "?", day: last.day, points: last.points, total: await repo.points(bot.name, u.user_id) }));
      }
      case "stats":
        return reply(ctx, await statsText(u));
      case "week": {
        if (cfg.weekly.style === "template" || !deps.llm || !deps.channel) return reply(ctx, await weekText(u, weekStart(today(u))));
        // Model words around the numbers: sent and charged as a proactive message, after this
        // message is marked answered (so a crash never answers it twice; at worst not at all).
        if (!(await deps.store.messages.setStatus(ctx.id!, "answered", { from: ["received", "failed", "expired"], fence: ctx.fence }))) return;
        ctx.outcome = "answered";
        try {
          await sendProactive(proactiveDeps(), {
            chatId: u.chat_id,
            threadKey: u.thread_key,
            kind: "week",
            replyTo: ctx.id!,
            ...(await weekMessage(u, weekStart(today(u)))),
          });
        } catch (error) {
          ctx.log.warn({ err: error }, "/week could not be sent");
        }
        return;
      }
      case "remind": {
        if (/^(off|выкл)/i.test(args)) {
          await repo.updateUser(bot.name, u.user_id, { remind_at: null });
          return reply(ctx, t("remind_off"));
        }
        const at = parseClock(args);
        if (at === null) return reply(ctx, t("bad_remind"));
        await repo.updateUser(bot.name, u.user_id, { remind_at: at });
        return reply(ctx, t("remind_set", { time: formatClock(at), zone: u.timezone }));
      }
      case "pause": {
        const m = /^(\d{1,2})\s*(d|д|дн|дней|days?)?$/i.exec(args);
        const n = m ? Number(m[1]) : NaN;
        if (!(n >= 1 && n <= 60)) return reply(ctx, t("bad_pause"));
        const from = today(u);
        const until = addDays(from, n - 1);
        await repo.addPause(bot.name, u.user_id, from, until);
        return reply(ctx, t("paused", { until }));
      }
      case "resume":
        await repo.endPauses(bot.name, u.user_id, addDays(today(u), -1));
        return reply(ctx, t("unpaused"));
      case "export":
      case "delete":
        // A user's data never goes to a group (`/export@bot` there would post it to everyone),
        // and erasing it is confirmed only between the user and the bot.
        if (!isPrivate(ctx.msg)) return reply(ctx, t("private_only"));
        return name === "export" ? exportFile(ctx, u) : askDelete(ctx, u);
      default:
        return reply(ctx, t("unknown_command"));
    }
  };

  /** `/export`: the user's data as a JSON file (Telegram: sendDocument) with the caption. */
  const exportFile = async (ctx: PipelineContext, u: CoachingUser) => {
    const document: OutgoingDocument = { filename: `coaching-${bot.name}-${u.user_id}.json`, content: JSON.stringify(await exportData(u), null, 2) };
    return reply(ctx, t("export_caption"), undefined, document);
  };

  /** `/delete`: asks for the confirmation (the next message, see the gate). */
  const askDelete = async (ctx: PipelineContext, u: CoachingUser) => {
    await repo.updateUser(bot.name, u.user_id, { step: "delete" });
    return reply(ctx, t("delete_confirm"), [
      [
        { label: en ? "🗑 Delete" : "🗑 Удалить", data: en ? "delete" : "удалить" },
        { label: en ? "Cancel" : "Отмена", data: en ? "cancel" : "отмена" },
      ],
    ]);
  };

  const replyGoals = (ctx: PipelineContext, u: CoachingUser) => command(ctx, u, "goals", "");

  const statsText = async (u: CoachingUser): Promise<string> => {
    const f = await factsOf(u);
    const lvl = levelFor(f.points);
    const goals = f.facts
      .map((x, i) => `${i + 1}. ${x.goal.title}: ${en ? "streak" : "серия"} ${streakText(x)} (${en ? "best" : "рекорд"} ${x.streak.best})`)
      .join("\n");
    const week = f.facts.map((x) => `${x.goal.title} ${x.weekDays}/${x.goal.target}`).join(", ") || "—";
    return t("stats", { points: f.points, level: lvl.level, to_next: lvl.next - f.points, goals, week });
  };

  const proactiveDeps = () => ({ bot, store: deps.store, channel: deps.channel!, now: deps.now, logger: log, signal: abort.signal, fence: deps.fence });

  /**
   * Asks the model for a text about this user: the bot's prompt with the user's numbers
   * (`{{coaching}}`), and the request as the user's turn.
   * @throws LlmError when the model fails
   */
  const askModel = async (u: CoachingUser, request: string, signal: AbortSignal | undefined): Promise<WrittenText> => {
    const facts = await modelFacts(u);
    const template = loadPrompt(bot, "messages");
    let system = renderPrompt(template, { botName: bot.name, timezone: u.timezone, nowMs: deps.now(), extra: { coaching: facts } });
    if (!/\{\{\s*coaching\s*\}\}/.test(template)) system += `\n\n${facts}`;
    return deps.llm!.complete(
      [
        { role: "system", content: system },
        { role: "user", content: request },
      ],
      { signal },
    );
  };

  /** The weekly summary: the numbers as the template prints them, with the model's words above when `weekly.style: model`. */
  const weekMessage = async (
    u: CoachingUser,
    monday: Day,
  ): Promise<{ text: string; write?: (signal: AbortSignal | undefined) => Promise<WrittenText | null> }> => {
    const numbers = await weekText(u, monday);
    if (cfg.weekly.style === "template" || !deps.llm) return { text: numbers };
    return {
      text: numbers,
      write: async (signal) => {
        const w = await askModel(u, t("week_request", { summary: numbers }), signal);
        const words = w.text.trim();
        // The numbers are the code's: words with digits of their own (a recount, a date) are refused.
        if (!words || /\p{Nd}/u.test(words) || words.length > 1500) return null;
        return { ...w, text: `${words}\n\n${numbers}` };
      },
    };
  };

  const weekText = async (u: CoachingUser, monday: Day): Promise<string> => {
    const f = await factsOf(u);
    const w = weekFigures(f.active, f.checkins, f.pauses, monday);
    const goals = w.goals.map((g) => `${g.goal.title}: ${g.days === null ? t("not_recorded") : `${g.days}/${g.goal.target}`}`).join("\n");
    return t("week_summary", { from: w.from, to: w.to, checkins: w.checkins, points: w.points, goals, best_day: w.bestDay ?? t("not_recorded") });
  };

  const exportData = async (u: CoachingUser) => ({
    user: { ...u, draft: undefined },
    goals: await repo.goals(bot.name, u.user_id, true),
    checkins: await repo.checkins(bot.name, u.user_id),
    pauses: await repo.pauses(bot.name, u.user_id),
    points: await repo.points(bot.name, u.user_id),
  });

  /** A private chat: the chat is the user (Telegram private `chat.id` = `from.id`; VK `peer_id` = `from_id`). */
  const isPrivate = (m: PipelineContext["msg"]) => m.userId !== null && m.chatId === m.userId;

  // --- the gate -----------------------------------------------------------------------------
  const gate: Middleware<PipelineContext> = async (ctx, next) => {
    const m = ctx.msg;
    if (!m.userId || m.kind !== "messages") return next();
    const text = m.text.trim();
    let u = await repo.user(bot.name, m.userId);
    if (m.membership) {
      // Not a message: the user blocked (or unblocked) the bot. Nothing is answered.
      if (u && m.membership === "blocked") await repo.updateUser(bot.name, u.user_id, { status: "blocked" });
      if (u?.status === "blocked" && m.membership === "unblocked") await repo.updateUser(bot.name, u.user_id, { status: "active" });
      await deps.store.messages.setStatus(ctx.id!, "skipped", { error: `membership: ${m.membership}`, from: ["received"], fence: ctx.fence });
      ctx.outcome = "skipped";
      return;
    }
    const cmd = /^\/([A-Za-z_]+)(?:@\S+)?\s*([\s\S]*)$/.exec(text);
    if (!u) {
      u = await repo.createUser({
        bot: bot.name,
        user_id: m.userId,
        chat_id: m.chatId,
        thread_key: m.threadKey,
        timezone: bot.timezone,
        day_starts_at: dayStart,
        remind_at: null,
        step: "name",
      });
      return reply(ctx, `${t("welcome")}\n\n${t("ask_name")}`);
    }
    if (u.status === "blocked") await repo.updateUser(bot.name, u.user_id, { status: "active" });
    if (u.status === "onboarding") {
      if (cmd?.[1] === "start" && u.step === "name") return reply(ctx, `${t("welcome")}\n\n${t("ask_name")}`);
      return onboarding(ctx, u, text, next);
    }
    // The erase confirmation counts only where it was asked: in the private chat.
    if (u.step === "delete" && isPrivate(m)) {
      if (/^(удалить|delete)[.!]?$/i.test(text)) {
        // Erase first: a crash after this leaves no data and no confirmation, never the reverse.
        await repo.deleteUser(bot.name, u.user_id, u.thread_key);
        await ctx.sendFreeReply!(t("deleted"));
        // The confirmation was stored as part of the dialog: erase that too.
        await repo.deleteUser(bot.name, u.user_id, u.thread_key);
        ctx.outcome = "answered";
        return;
      }
      await repo.updateUser(bot.name, u.user_id, { step: null });
      if (!cmd) return reply(ctx, t("delete_cancelled"));
    }
    const editing = u.step?.startsWith("edit:") ? (await repo.goals(bot.name, u.user_id)).find((g) => `edit:${g.id}` === u.step) : undefined;
    if (u.step?.startsWith("edit:")) await repo.updateUser(bot.name, u.user_id, { step: null });
    if (editing && !cmd) {
      const g = parseGoal(text);
      if (!g) return reply(ctx, t("bad_goals"));
      // The goal keeps its id, so its check-ins (the history) stay with it.
      await repo.updateGoal(editing.id, g);
      return reply(ctx, t("goal_added", { goal: `${g.title} (${goalKind(g)})` }));
    }
    if (cmd) return command(ctx, u, cmd[1]!.toLowerCase(), cmd[2]!.trim());
    ctx.promptSections.push({ name: "coaching", text: await modelFacts(u) });
    await next();
  };

  // --- log_progress ---------------------------------------------------------------------------
  const logProgress: ToolDefinition<PipelineContext> = {
    name: "log_progress",
    description:
      'Record that the user did one of their goals (a check-in), when they report progress in their own words ("ran 5 km"). Returns the new streak and points to tell them.',
    parameters: {
      type: "object",
      properties: {
        goal: { type: "string", description: "the goal's number from the facts (1, 2, 3) or its title" },
        day: { type: "string", description: "'today' (default), 'yesterday', or a date YYYY-MM-DD within the last 7 days" },
        note: { type: "string", description: "what they did, in a few words (e.g. '5 km')" },
      },
      required: ["goal"],
      additionalProperties: false,
    },
    async run(args, ctx) {
      const u = ctx.msg.userId ? await repo.user(bot.name, ctx.msg.userId) : undefined;
      if (!u || u.status === "onboarding") return "error: the user has not finished onboarding; nothing recorded.";
      const f = await factsOf(u);
      const goal = goalByNumber(f.active, typeof args.goal === "string" || typeof args.goal === "number" ? String(args.goal) : undefined);
      if (!goal)
        return `error: no such goal. Active goals: ${f.active.map((g, i) => `${i + 1} "${g.title}"`).join(", ") || "none"}. Ask which one, or call again with its number.`;
      const dayArg = typeof args.day === "string" && args.day !== "today" ? args.day : undefined;
      const day = backfillDay(u, dayArg);
      if (day === null || day === "range") return "error: day must be today, yesterday, or a date within the last 7 days; nothing recorded.";
      const note = typeof args.note === "string" ? args.note.slice(0, 500) : null;
      // One check-in per goal and day for this message, however often the model calls.
      const effect = ctx.id === undefined ? undefined : { bot: bot.name, message_id: ctx.id, tool: "log_progress", args: { goal_id: goal.id, day } };
      const r = await checkIn(u, goal, day, "text", note, effect);
      if (r.row.repeated) {
        ctx.log.info({ goal_id: goal.id, day }, "log_progress repeated for the same message; nothing recorded again");
        return `ok: already recorded "${goal.title}" for ${day} for this message: total ${r.total}, level ${r.level}, streak ${r.streak}. Do not call log_progress again for it; tell the user these numbers as given.`;
      }
      ctx.log.info({ goal_id: goal.id, day, points: r.row.points }, "check-in logged by the model");
      return `ok: recorded "${goal.title}" for ${day}: +${r.row.points} points, total ${r.total}, level ${r.level}, streak ${r.streak}. Tell the user these numbers as given.`;
    },
  };

  // --- the scheduler ----------------------------------------------------------------------------
  const deliver = async (
    u: CoachingUser,
    kind: "reminder" | "weekly",
    day: Day,
    message: () => Promise<{ text: string; write?: (signal: AbortSignal | undefined) => Promise<WrittenText | null> }>,
  ): Promise<"sent" | "failed" | "skipped"> => {
    const claim = await repo.claimDelivery(bot.name, u.user_id, kind, day);
    if (claim === null) return "skipped";
    try {
      const { messageId, cost, written } = await sendProactive(proactiveDeps(), { chatId: u.chat_id, threadKey: u.thread_key, kind, ...(await message()) });
      // Sent: record it through a database outage (a claim left `claimed` is never sent again).
      await recordThroughOutage(log, () => repo.finishDelivery(claim, "sent", messageId));
      log.info({ user_id: u.user_id, kind, day, cost_credits: formatCredits(cost), written }, "proactive message sent");
      return "sent";
    } catch (error) {
      const blocked = error instanceof ChannelError && error.status === 403;
      if (blocked) await repo.updateUser(bot.name, u.user_id, { status: "blocked" });
      await repo.finishDelivery(claim, "failed", null, describeError(error).slice(0, 2000));
      log.warn(
        { err: error, user_id: u.user_id, kind, day, blocked },
        blocked ? "user blocked the bot; no more proactive messages" : "proactive message failed",
      );
      return "failed";
    }
  };

  const tick = async (): Promise<TickResult> => {
    const res: TickResult = { reminders: 0, weekly: 0, failed: 0 };
    if (!deps.channel) return res;
    const now = deps.now();
    for (const u of await repo.reminderCandidates(bot.name)) {
      // Stopping: leave the rest to the next pass (of this or another process).
      if (abort.signal.aborted) break;
      try {
        const day = today(u);
        const pauses = pauseRanges(await repo.pauses(bot.name, u.user_id));
        if (pauses.some((p) => day >= p.from && (p.until === null || day <= p.until))) continue;
        if (u.remind_at !== null) {
          const due = dueInstant(now, u.timezone, u.remind_at, u.day_starts_at);
          if (now >= due.dueMs && now - due.dueMs <= catchUpMs && !(await repo.hasCheckin(bot.name, u.user_id, due.day))) {
            const goals = (await repo.goals(bot.name, u.user_id)).filter((g) => g.status === "active");
            if (goals.length) {
              const r = await deliver(u, "reminder", due.day, async () => {
                const text = t("reminder", { name: u.name ?? "", goals: goals.map((g) => g.title).join(", ") });
                if (cfg.reminders.style === "template" || !deps.llm) return { text };
                return {
                  text,
                  write: (signal) =>
                    askModel(u, t("reminder_request", { goals: goals.map((g) => g.title).join(", ") }), signal).then((w) =>
                      w.text.trim() && w.text.length <= 1500 ? w : null,
                    ),
                };
              });
              if (r === "sent") res.reminders++;
              if (r === "failed") res.failed++;
              if (r === "failed") continue;
            }
          }
        }
        if (cfg.weekly.enabled) {
          const monday = weekStart(day);
          const dueMs = zonedInstant(addDays(monday, cfg.weekly.weekday - 1), weeklyAt, u.timezone);
          if (now >= dueMs && now - dueMs <= catchUpMs) {
            const r = await deliver(u, "weekly", monday, () => weekMessage(u, monday));
            if (r === "sent") res.weekly++;
            if (r === "failed") res.failed++;
          }
        }
      } catch (error) {
        log.error({ err: error, user_id: u.user_id }, "scheduler pass failed for a user");
      }
    }
    return res;
  };

  return {
    name: "coaching",
    gate,
    tools: [logProgress],
    accepts: COACHING_ACCEPTS,
    tick,
    start() {
      if (!deps.channel) return;
      loop = (async () => {
        while (!abort.signal.aborted) {
          await tick().catch((e) => log.error({ err: e }, "coaching scheduler pass failed"));
          await sleep(cfg.reminders.interval_s * 1000, abort.signal);
        }
      })();
    },
    async stop() {
      abort.abort();
      await loop;
    },
  };
}

/** True when a goal line says how often: "каждый день", "ежедневно", "3 раза в неделю", "daily", "3 times a week". */
function namesFrequency(line: string): boolean {
  return /\d\s*(?:раз|times?|x|×)|кажд\p{L}*\s+день|ежедневн|daily|every\s*day/iu.test(line);
}

/** The goal whose title shares the most words (4+ letters, any case) with `text`. */
function findGoal(goals: GoalRow[], text: string): GoalRow | undefined {
  const words = (s: string) =>
    new Set(
      s
        .toLowerCase()
        .split(/[^\p{L}\p{N}]+/u)
        .filter((w) => w.length >= 4)
        .map((w) => w.slice(0, 5)),
    );
  const want = words(text);
  let best: GoalRow | undefined;
  let score = 0;
  for (const g of goals) {
    const n = [...words(g.title)].filter((w) => want.has(w)).length;
    if (n > score) [best, score] = [g, n];
  }
  return best;
}
