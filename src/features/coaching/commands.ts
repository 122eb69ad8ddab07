import { sendProactive } from "../../core/proactive.js";
import type { Button, OutgoingDocument, PipelineContext } from "../../core/types.js";
import type { CoachingUser } from "../../storage/coaching.js";
import type { CoachingContext } from "./context.js";
import { backfillDay, checkIn, factsOf, goalByNumber, goalKind, streakText, weekText } from "./facts.js";
import { parseGoal } from "./goals.js";
import { reply, replyWithDocument } from "./reply.js";
import { addDays, formatClock, levelFor, parseClock, weekStart } from "./rules.js";
import { proactiveDeps, weekMessage } from "./scheduler.js";

// The commands of a user past onboarding (docs/coaching.md, "What the user does"): each one entry of
// {@link COMMANDS}, looked up by name by {@link runCommand}. They answer by themselves (free
// replies, no model call), except `/week` with `weekly.style: model`.

/** A command as the user sent it: `/name args`. */
export interface CommandCall {
  /** The command's name, lower case, without `/` and `@bot`. */
  name: string;
  /** The text after it, trimmed. */
  args: string;
  /** `args` split on white space. */
  words: string[];
}

/** Answers one command of `u`; the message ends answered (or, for `/week`, answered before the proactive send). */
export type CommandHandler = (c: CoachingContext, ctx: PipelineContext, u: CoachingUser, call: CommandCall) => Promise<void>;

/**
 * A user's data never goes to a group (`/export@bot` there would post it to everyone), and erasing
 * it is confirmed only between the user and the bot: outside the private chat, `handler` is not run.
 */
const privateOnly =
  (handler: CommandHandler): CommandHandler =>
  (c, ctx, u, call) =>
    isPrivate(ctx.msg) ? handler(c, ctx, u, call) : reply(c, ctx, c.t("private_only"));

/** `/goals`: the goals with today's mark and streak, and per goal: done today, edit (asks for the new text), pause, archive. */
const goals: CommandHandler = async (c, ctx, u) => {
  const { en, t } = c;
  const f = await factsOf(c, u);
  if (!f.facts.length) return reply(c, ctx, t("no_goals"));
  const lines = f.facts.map(
    (x, i) =>
      `${i + 1}. ${x.doneToday ? "✅" : "▫️"} ${x.goal.title} — ${goalKind(c, x.goal)}${x.goal.status === "paused" ? (en ? " (paused)" : " (пауза)") : ""}, ${streakText(c, x)}`,
  );
  const buttons = f.facts.map((x, i): Button[] => [
    ...(x.doneToday ? [] : [{ label: `✅ ${i + 1}`, data: `/done ${i + 1}` }]),
    { label: `✏️ ${i + 1}`, data: `/goal edit ${i + 1}` },
    { label: `⏸ ${i + 1}`, data: `/goal pause ${i + 1}` },
    { label: `🗄 ${i + 1}`, data: `/goal archive ${i + 1}` },
  ]);
  return reply(c, ctx, `${t("goals_header")}\n${lines.join("\n")}`, buttons);
};

/** The commands by name (lower case, without `/`). A name not in it gets `unknown_command`. */
export const COMMANDS: Readonly<Record<string, CommandHandler>> = {
  start: async (c, ctx, u) => {
    if (u.status === "stopped" || u.status === "blocked") {
      await c.repo.updateUser(c.bot.name, u.user_id, { status: "active" });
      return reply(c, ctx, c.t("resumed"));
    }
    return reply(c, ctx, c.t("help"));
  },
  help: (c, ctx) => reply(c, ctx, c.t("help")),
  stop: async (c, ctx, u) => {
    await c.repo.updateUser(c.bot.name, u.user_id, { status: "stopped" });
    return reply(c, ctx, c.t("stopped"));
  },
  goals,
  // `/goal add TEXT`, `/goal edit N [TEXT]`, `/goal pause|archive|resume N`.
  goal: async (c, ctx, u, { words }) => {
    const { bot, cfg, repo, t } = c;
    const [sub, ...rest] = words;
    const f = await factsOf(c, u);
    if (sub === "add") {
      const g = parseGoal(rest.join(" "));
      if (!g) return reply(c, ctx, t("bad_goals"));
      if (f.active.length >= cfg.max_goals) return reply(c, ctx, t("too_many_goals", { max: cfg.max_goals }));
      await repo.addGoal({ bot: bot.name, user_id: u.user_id, ...g });
      return reply(c, ctx, t("goal_added", { goal: `${g.title} (${goalKind(c, g)})` }));
    }
    const all = f.goals.filter((g) => g.status !== "archived");
    const goal = rest[0] && /^\d+$/.test(rest[0]) ? all[Number(rest[0]) - 1] : undefined;
    if (!goal) return reply(c, ctx, t("help"));
    if (sub === "edit") {
      // The ✏️ button (no text yet): the next message is the new wording.
      if (rest.length === 1) {
        await repo.updateUser(bot.name, u.user_id, { step: `edit:${goal.id}` });
        return reply(c, ctx, t("ask_goal_edit", { goal: goal.title }));
      }
      const g = parseGoal(rest.slice(1).join(" "));
      if (!g) return reply(c, ctx, t("bad_goals"));
      // The goal keeps its id, so its check-ins (the history) stay with it.
      await repo.updateGoal(goal.id, g);
      return reply(c, ctx, t("goal_added", { goal: `${g.title} (${goalKind(c, g)})` }));
    }
    if (sub === "pause" || sub === "archive" || sub === "resume") {
      await repo.updateGoal(goal.id, { status: sub === "pause" ? "paused" : sub === "archive" ? "archived" : "active" });
      return goals(c, ctx, u, { name: "goals", args: "", words: [] });
    }
    return reply(c, ctx, t("help"));
  },
  // `/done [N] [yesterday|вчера|YYYY-MM-DD|DD.MM]`.
  done: async (c, ctx, u, { words }) => {
    const { t } = c;
    const f = await factsOf(c, u);
    const dayWord = words.find((w) => !/^\d+$/.test(w));
    const day = backfillDay(c, u, dayWord);
    if (day === "range") return reply(c, ctx, t("backfill_range"));
    const goal = goalByNumber(f.active, words.find((w) => /^\d+$/.test(w)) ?? (day === null ? dayWord : undefined));
    if (!goal) return reply(c, ctx, t("which_goal", { list: f.active.map((g, i) => `${i + 1} — ${g.title}`).join("; ") || "—" }));
    const r = await checkIn(c, u, goal, day ?? f.day, day && day !== f.day ? "backfill" : ctx.msg.button ? "button" : "command");
    return reply(c, ctx, t("done", { goal: goal.title, day: r.row.day, points: r.row.points, total: r.total, level: r.level, streak: r.streak }));
  },
  undo: async (c, ctx, u) => {
    const { bot, repo, t } = c;
    const last = await repo.undoLast(bot.name, u.user_id);
    if (!last) return reply(c, ctx, t("nothing_to_undo"));
    const goal = (await repo.goals(bot.name, u.user_id, true)).find((g) => g.id === last.goal_id);
    return reply(c, ctx, t("undone", { goal: goal?.title ?? "?", day: last.day, points: last.points, total: await repo.points(bot.name, u.user_id) }));
  },
  stats: async (c, ctx, u) => reply(c, ctx, await statsText(c, u)),
  week: async (c, ctx, u) => {
    const { cfg, deps } = c;
    if (cfg.weekly.style === "template" || !deps.llm || !deps.channel) return reply(c, ctx, await weekText(c, u, weekStart(c.today(u))));
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
        ...(await weekMessage(c, u, weekStart(c.today(u)))),
      });
    } catch (error) {
      ctx.log.warn({ err: error }, "/week could not be sent");
    }
  },
  // `/remind HH:MM` or `/remind off`.
  remind: async (c, ctx, u, { args }) => {
    const { bot, repo, t } = c;
    if (/^(off|выкл)/i.test(args)) {
      await repo.updateUser(bot.name, u.user_id, { remind_at: null });
      return reply(c, ctx, t("remind_off"));
    }
    const at = parseClock(args);
    if (at === null) return reply(c, ctx, t("bad_remind"));
    await repo.updateUser(bot.name, u.user_id, { remind_at: at });
    return reply(c, ctx, t("remind_set", { time: formatClock(at), zone: u.timezone }));
  },
  // `/pause 7d`: from today, 1 to 60 days.
  pause: async (c, ctx, u, { args }) => {
    const m = /^(\d{1,2})\s*(d|д|дн|дней|days?)?$/i.exec(args);
    const n = m ? Number(m[1]) : NaN;
    if (!(n >= 1 && n <= 60)) return reply(c, ctx, c.t("bad_pause"));
    const from = c.today(u);
    const until = addDays(from, n - 1);
    await c.repo.addPause(c.bot.name, u.user_id, from, until);
    return reply(c, ctx, c.t("paused", { until }));
  },
  resume: async (c, ctx, u) => {
    await c.repo.endPauses(c.bot.name, u.user_id, addDays(c.today(u), -1));
    return reply(c, ctx, c.t("unpaused"));
  },
  // The user's data as a JSON file (Telegram: sendDocument) with the caption.
  export: privateOnly(async (c, ctx, u) => {
    const { bot, repo } = c;
    const data = {
      user: { ...u, draft: undefined },
      goals: await repo.goals(bot.name, u.user_id, true),
      checkins: await repo.checkins(bot.name, u.user_id),
      pauses: await repo.pauses(bot.name, u.user_id),
      points: await repo.points(bot.name, u.user_id),
    };
    const document: OutgoingDocument = { filename: `coaching-${bot.name}-${u.user_id}.json`, content: JSON.stringify(data, null, 2) };
    return replyWithDocument(c, ctx, c.t("export_caption"), document);
  }),
  // Asks for the confirmation: the next message, see the gate in feature.ts.
  delete: privateOnly(async (c, ctx, u) => {
    const { en } = c;
    await c.repo.updateUser(c.bot.name, u.user_id, { step: "delete" });
    return reply(c, ctx, c.t("delete_confirm"), [
      [
        { label: en ? "🗑 Delete" : "🗑 Удалить", data: en ? "delete" : "удалить" },
        { label: en ? "Cancel" : "Отмена", data: en ? "cancel" : "отмена" },
      ],
    ]);
  }),
};

/** Runs the command `name` (lower case) of `u` with `args` (trimmed) from {@link COMMANDS}; an unknown one gets `unknown_command`. */
export function runCommand(c: CoachingContext, ctx: PipelineContext, u: CoachingUser, name: string, args: string): Promise<void> {
  // Own keys only: `/constructor` or `/__proto__` are unknown commands, not Object.prototype.
  const handler = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!handler) return reply(c, ctx, c.t("unknown_command"));
  return handler(c, ctx, u, { name, args, words: args.split(/\s+/).filter(Boolean) });
}

/** A private chat: the chat is the user (Telegram private `chat.id` = `from.id`; VK `peer_id` = `from_id`). */
export function isPrivate(m: PipelineContext["msg"]): boolean {
  return m.userId !== null && m.chatId === m.userId;
}

/** `/stats`: points, level, each goal's streak and record, and this week's days per goal. */
async function statsText(c: CoachingContext, u: CoachingUser): Promise<string> {
  const { en } = c;
  const f = await factsOf(c, u);
  const lvl = levelFor(f.points);
  const goals = f.facts
    .map((x, i) => `${i + 1}. ${x.goal.title}: ${en ? "streak" : "серия"} ${streakText(c, x)} (${en ? "best" : "рекорд"} ${x.streak.best})`)
    .join("\n");
  const week = f.facts.map((x) => `${x.goal.title} ${x.weekDays}/${x.goal.target}`).join(", ") || "—";
  return c.t("stats", { points: f.points, level: lvl.level, to_next: lvl.next - f.points, goals, week });
}
