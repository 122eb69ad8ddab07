import type { PipelineContext } from "../../core/types.js";
import type { ToolDefinition } from "../../llm/client.js";
import type { CoachingContext } from "./context.js";
import { backfillDay, checkIn, factsOf, goalByNumber } from "./facts.js";

/**
 * The `log_progress` tool: the model records a check-in the user reports in their own words.
 * It answers the model with the new numbers (or an `error: ...` it can act on), computed here.
 */
export function logProgressTool(c: CoachingContext): ToolDefinition<PipelineContext> {
  const { bot, repo } = c;
  return {
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
      const f = await factsOf(c, u);
      const goal = goalByNumber(f.active, typeof args.goal === "string" || typeof args.goal === "number" ? String(args.goal) : undefined);
      if (!goal)
        return `error: no such goal. Active goals: ${f.active.map((g, i) => `${i + 1} "${g.title}"`).join(", ") || "none"}. Ask which one, or call again with its number.`;
      const dayArg = typeof args.day === "string" && args.day !== "today" ? args.day : undefined;
      const day = backfillDay(c, u, dayArg);
      if (day === null || day === "range") return "error: day must be today, yesterday, or a date within the last 7 days; nothing recorded.";
      const note = typeof args.note === "string" ? args.note.slice(0, 500) : null;
      // One check-in per goal and day for this message, however often the model calls.
      const effect = ctx.id === undefined ? undefined : { bot: bot.name, message_id: ctx.id, tool: "log_progress", args: { goal_id: goal.id, day } };
      const r = await checkIn(c, u, goal, day, "text", note, effect);
      if (r.row.repeated) {
        ctx.log.info({ goal_id: goal.id, day }, "log_progress repeated for the same message; nothing recorded again");
        return `ok: already recorded "${goal.title}" for ${day} for this message: total ${r.total}, level ${r.level}, streak ${r.streak}. Do not call log_progress again for it; tell the user these numbers as given.`;
      }
      ctx.log.info({ goal_id: goal.id, day, points: r.row.points }, "check-in logged by the model");
      return `ok: recorded "${goal.title}" for ${day}: +${r.row.points} points, total ${r.total}, level ${r.level}, streak ${r.streak}. Tell the user these numbers as given.`;
    },
  };
}
