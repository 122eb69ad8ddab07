import type { CoachingConfig } from "../../config/features.js";
import type { BotConfig } from "../../config/schema.js";
import type { Feature } from "../../core/pipeline.js";
import type { AcceptedUpdates, PipelineContext } from "../../core/types.js";
import type { Middleware } from "../../lib/compose.js";
import { sleep as realSleep } from "../../lib/retry.js";
import { isPrivate, runCommand } from "./commands.js";
import { type CoachingContext, type CoachingDeps, coachingContext } from "./context.js";
import { goalKind, modelFacts } from "./facts.js";
import { parseGoal } from "./goals.js";
import { onboarding } from "./onboarding.js";
import { reply, setPromptSection } from "./reply.js";
import { parseClock } from "./rules.js";
import { scheduler, type TickResult } from "./scheduler.js";
import { logProgressTool } from "./tool.js";

export type { CoachingDeps } from "./context.js";
export type { TickResult } from "./scheduler.js";

/** The coaching feature: a gate, the `log_progress` tool, and the reminder schedule. */
export interface CoachingFeature extends Feature {
  /** One scheduler pass at the clock's now: sends due reminders and weekly summaries once each. */
  tick(): Promise<TickResult>;
}

/**
 * What coaching takes from channels: a shared location sets the time zone; `/start` and `/help`
 * are onboarding and the command list; a block or unblock stops or resumes scheduled messages.
 */
export const COACHING_ACCEPTS: AcceptedUpdates = { locations: true, startHelp: true, membership: true };

/**
 * `features.coaching` (docs/coaching.md). The gate handles onboarding (onboarding.ts) and the
 * commands (commands.ts) itself (free replies, no model call); other messages go to the model with
 * the user's numbers in `{{coaching}}` (facts.ts) and the `log_progress` tool (tool.ts). Inside
 * `bots start` a scheduler (scheduler.ts) sends each user one reminder per local day and one
 * weekly summary per week, each claimed first by a delivery row.
 */
export function coachingFeature(bot: BotConfig, cfg: CoachingConfig, deps: CoachingDeps): CoachingFeature {
  const abort = new AbortController();
  const c = coachingContext(bot, cfg, deps, abort.signal);
  const schedule = scheduler(c);
  let loop: Promise<void> | undefined;
  return {
    name: "coaching",
    accepts: COACHING_ACCEPTS,
    gate: gate(c),
    tools: [logProgressTool(c)],
    tick: schedule.tick,
    start() {
      if (!deps.channel) return;
      loop = schedule.run(deps.sleep ?? realSleep);
    },
    async stop() {
      abort.abort();
      await loop;
    },
  };
}

/**
 * The gate: a user's message goes to onboarding, the answer a command asked for (the erase
 * confirmation, a goal's new wording), a command, or else to the model with the user's facts.
 */
function gate(c: CoachingContext): Middleware<PipelineContext> {
  const { bot, repo, t } = c;
  const dayStart = parseClock(c.cfg.day_starts_at)!;
  return async (ctx, next) => {
    const m = ctx.msg;
    if (!m.userId || m.kind !== "messages") return next();
    const text = m.text.trim();
    let u = await repo.user(bot.name, m.userId);
    if (m.membership) {
      // Not a message: the user blocked (or unblocked) the bot. Nothing is answered.
      if (u && m.membership === "blocked") await repo.updateUser(bot.name, u.user_id, { status: "blocked" });
      if (u?.status === "blocked" && m.membership === "unblocked") await repo.updateUser(bot.name, u.user_id, { status: "active" });
      await c.deps.store.messages.setStatus(ctx.id!, "skipped", { error: `membership: ${m.membership}`, from: ["received"], fence: ctx.fence });
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
      return reply(c, ctx, `${t("welcome")}\n\n${t("ask_name")}`);
    }
    if (u.status === "blocked") await repo.updateUser(bot.name, u.user_id, { status: "active" });
    if (u.status === "onboarding") {
      if (cmd?.[1] === "start" && u.step === "name") return reply(c, ctx, `${t("welcome")}\n\n${t("ask_name")}`);
      return onboarding(c, ctx, u, text, next);
    }
    // The erase confirmation (asked by `/delete`) counts only where it was asked: in the private chat.
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
      if (!cmd) return reply(c, ctx, t("delete_cancelled"));
    }
    // A goal's new wording, asked by the ✏️ button (`/goal edit N`).
    const editing = u.step?.startsWith("edit:") ? (await repo.goals(bot.name, u.user_id)).find((g) => `edit:${g.id}` === u.step) : undefined;
    if (u.step?.startsWith("edit:")) await repo.updateUser(bot.name, u.user_id, { step: null });
    if (editing && !cmd) {
      const g = parseGoal(text);
      if (!g) return reply(c, ctx, t("bad_goals"));
      // The goal keeps its id, so its check-ins (the history) stay with it.
      await repo.updateGoal(editing.id, g);
      return reply(c, ctx, t("goal_added", { goal: `${g.title} (${goalKind(c, g)})` }));
    }
    if (cmd) return runCommand(c, ctx, u, cmd[1]!.toLowerCase(), cmd[2]!.trim());
    setPromptSection(ctx, await modelFacts(c, u));
    await next();
  };
}
