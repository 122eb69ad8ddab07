import type { CoachingConfig } from "../../config/features.js";
import type { BotConfig } from "../../config/schema.js";
import type { Feature } from "../../core/pipeline.js";
import { sendProactive } from "../../core/proactive.js";
import type { Button, OutgoingDocument, PipelineContext } from "../../core/types.js";
import type { Middleware } from "../../lib/compose.js";
import { sleep as realSleep } from "../../lib/retry.js";
import type { ToolDefinition } from "../../llm/client.js";
import type { CoachingUser, GoalRow } from "../../storage/coaching.js";
import type { ToolEffectKey } from "../../storage/tool-effects.js";
import { type CoachingDeps, coachingContext } from "./context.js";
import {
  backfillDay as backfillDayOf,
  checkIn as checkInAs,
  factsOf as readFacts,
  goalByNumber,
  goalKind as goalKindOf,
  modelFacts as modelFactsOf,
  streakText as streakTextOf,
  weekText as weekTextOf,
} from "./facts.js";
import { type GoalFacts, parseGoal } from "./goals.js";
import { onboarding } from "./onboarding.js";
import { proactiveDeps, scheduler, type TickResult, weekMessage } from "./scheduler.js";
import { reply as replyTo, replyWithDocument, setPromptSection } from "./reply.js";
import { addDays, type Day, formatClock, levelFor, parseClock, weekStart } from "./rules.js";

export type { CoachingDeps } from "./context.js";
export type { TickResult } from "./scheduler.js";

/** The coaching feature: a gate, the `log_progress` tool, and the reminder schedule. */
export interface CoachingFeature extends Feature {
  /** One scheduler pass at the clock's now: sends due reminders and weekly summaries once each. */
  tick(): Promise<TickResult>;
}

/**
 * `features.coaching` (seed 003, docs/coaching.md). The gate handles onboarding and the
 * commands itself (free replies, no model call); other messages go to the model with the
 * user's numbers in `{{coaching}}` and the `log_progress` tool. Inside `bots start` a scheduler
 * sends each user one reminder per local day and one weekly summary per week, each claimed
 * first by a delivery row.
 */
export function coachingFeature(bot: BotConfig, cfg: CoachingConfig, deps: CoachingDeps): CoachingFeature {
  const abort = new AbortController();
  const c = coachingContext(bot, cfg, deps, abort.signal);
  const { repo, t, today, en } = c;
  const sleep = deps.sleep ?? realSleep;
  const dayStart = parseClock(cfg.day_starts_at)!;
  const schedule = scheduler(c);
  let loop: Promise<void> | undefined;

  const reply = (ctx: PipelineContext, text: string, buttons?: Button[][]) => replyTo(c, ctx, text, buttons);
  const goalKind = (g: Pick<GoalRow, "kind" | "target">) => goalKindOf(c, g);
  const streakText = (f: GoalFacts) => streakTextOf(c, f);
  const factsOf = (u: CoachingUser) => readFacts(c, u);
  const modelFacts = (u: CoachingUser) => modelFactsOf(c, u);
  const checkIn = (u: CoachingUser, goal: GoalRow, day: Day, source: string, note?: string | null, effect?: ToolEffectKey) =>
    checkInAs(c, u, goal, day, source, note, effect);
  const backfillDay = (u: CoachingUser, word: string | undefined) => backfillDayOf(c, u, word);

  // --- commands -----------------------------------------------------------------------------
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
          await sendProactive(proactiveDeps(c), {
            chatId: u.chat_id,
            threadKey: u.thread_key,
            kind: "week",
            replyTo: ctx.id!,
            ...(await weekMessage(c, u, weekStart(today(u)))),
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
    return replyWithDocument(c, ctx, t("export_caption"), document);
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

  const weekText = (u: CoachingUser, monday: Day) => weekTextOf(c, u, monday);

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
      return onboarding(c, ctx, u, text, next);
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
    setPromptSection(ctx, await modelFacts(u));
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

  return {
    name: "coaching",
    gate,
    tools: [logProgress],
    tick: schedule.tick,
    start() {
      if (!deps.channel) return;
      loop = schedule.run(sleep);
    },
    async stop() {
      abort.abort();
      await loop;
    },
  };
}
