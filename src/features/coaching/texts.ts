/**
 * Every text features.coaching sends by itself, in Russian (default) and English
 * (`language: en`); any of them can be replaced in `features.coaching.texts`. `{name}`-style
 * placeholders are filled in by {@link fill}.
 */
export const TEXTS = {
  ru: {
    welcome: "Привет! Я ваш коуч: помогу держать цели каждый день. Пара вопросов, и начнём. /skip пропускает необязательный шаг.",
    ask_name: "Как к вам обращаться?",
    bad_name: "Напишите просто имя, как к вам обращаться (например: Аня).",
    ask_timezone:
      "В каком вы городе или часовом поясе? Например: Москва, Berlin или Europe/Berlin, или отправьте геопозицию (📎 → Геопозиция). /skip — {zone}.",
    bad_timezone: "Не узнаю такой город. Напишите крупный город рядом (Москва, Екатеринбург, Berlin) или пояс вида Europe/Berlin.",
    ask_goals: "Какие у вас цели? От одной до трёх, каждая с новой строки. Например:\nбегать 3 раза в неделю\nчитать 20 минут",
    bad_goals: "Напишите от одной до трёх целей, каждую с новой строки, коротко (до 120 знаков): что и как часто.",
    ask_remind: "Во сколько напоминать о целях? Напишите время, например 20:00. /skip — без напоминаний.",
    bad_remind: "Напишите время в виде ЧЧ:ММ, например 20:00, или /skip.",
    goals_request:
      "Помоги сформулировать цели пользователя для коучинга: для каждой — короткая конкретная формулировка (до 80 знаков) с частотой: «каждый день» или «N раз в неделю». Его цели: {goals}. Ответь только целями, по одной в строке, столько же, сколько у него, без нумерации и пояснений.",
    goals_suggested: "Взять эти формулировки? «да» — взять, «мои» — оставить ваши (потом их можно поменять: /goal edit).",
    location_zone: "Часовой пояс по геопозиции: {zone}.",
    ask_photos: "Пришлите фото для мудборда — то, что вдохновляет (можно несколько). Когда закончите, напишите «готово». /skip — пропустить.",
    photo_saved: "Фото сохранено ({count}). Ещё одно или «готово».",
    profile_request: "Составь короткий профиль пользователя для коучинга (3-5 предложений) по его ответам: {answers}. Обратись к нему по имени.",
    confirm_profile: "Всё верно? Ответьте «да», чтобы начать, или «изменить», чтобы пройти вопросы заново.",
    onboarding_done: "Готово, начинаем! /goals — цели, /done — отметить выполнение, /stats — прогресс, /help — все команды.",
    help: "Команды:\n/goals — цели\n/goal add ТЕКСТ — новая цель\n/done [номер] — выполнено сегодня, /done yesterday — за вчера\n/undo — отменить последнюю отметку\n/stats — очки, уровень, серии\n/week — итоги недели\n/remind ЧЧ:ММ или /remind off\n/pause 7d, /resume — отпуск\n/stop — без напоминаний\n/export — мои данные, /delete — удалить всё",
    no_goals: "Целей пока нет. Добавьте: /goal add бегать 3 раза в неделю",
    goals_header: "Ваши цели:",
    goal_added: "Цель добавлена: {goal}",
    ask_goal_edit: "Напишите новую формулировку цели «{goal}» (отметки останутся с ней).",
    too_many_goals: "Уже {max} активных цели. Архивируйте одну, чтобы добавить новую.",
    which_goal: "Какую цель отметить? Напишите /done и номер: {list}",
    done: "✅ {goal} — отмечено за {day}. +{points} очков (всего {total}, уровень {level}). Серия: {streak}",
    backfill_range: "Отметить можно только за последние 7 дней.",
    undone: "Отменено: {goal} за {day}, −{points} очков (всего {total}).",
    nothing_to_undo: "Отменять нечего.",
    remind_set: "Буду напоминать в {time} ({zone}).",
    remind_off: "Напоминания выключены.",
    stopped: "Больше не пишу первым. /start — включить снова.",
    resumed: "Снова с вами! Напоминания включены.",
    paused: "Пауза до {until} включительно: серии не прервутся. /resume — вернуться раньше.",
    unpaused: "Пауза закончена.",
    bad_pause: "Напишите срок паузы, например /pause 7d (от 1 до 60 дней).",
    reminder: "{name}, напоминаю о целях на сегодня: {goals}. Отметьте выполнение: /done",
    reminder_request:
      "Напиши пользователю короткое дружеское напоминание (1-2 предложения) о целях, не отмеченных сегодня: {goals}. Обратись по имени, опирайся на его цифры, в конце предложи отметить выполнение командой /done. Только текст напоминания.",
    week_request:
      "Напиши 2-3 предложения к итогам недели пользователя: похвали за сделанное, мягко подбодри там, где не записано. Цифры бот добавит сам под твоим текстом, поэтому не пиши ни цифр, ни дат. Итоги: {summary}",
    stats: "Очки: {points}, уровень {level} (до следующего {to_next}).\n{goals}\nЭта неделя: {week}",
    week_summary: "Итоги недели {from} — {to}:\nОтметок: {checkins}, очков: {points}\n{goals}\nЛучший день: {best_day}",
    not_recorded: "не записано",
    export_caption: "Ваши данные",
    private_only: "Эта команда работает только в личном чате с ботом: напишите её мне в личные сообщения.",
    delete_confirm: "Удалить все ваши данные (цели, отметки, переписку)? Это нельзя отменить. Напишите «удалить», чтобы подтвердить.",
    deleted: "Все ваши данные удалены. /start — начать заново.",
    delete_cancelled: "Удаление отменено.",
    unknown_command: "Не знаю такой команды. /help — список.",
  },
  en: {
    welcome: "Hi! I'm your coach: I'll help you keep your goals every day. A few questions first. /skip skips an optional step.",
    ask_name: "What should I call you?",
    bad_name: "Just write the name I should call you (e.g. Anna).",
    ask_timezone: "Which city or time zone are you in? E.g. Moscow, Berlin or Europe/Berlin, or share your location (📎 → Location). /skip — {zone}.",
    bad_timezone: "I don't know that city. Write a big city near you (Berlin, London) or a zone like Europe/Berlin.",
    ask_goals: "What are your goals? One to three, one per line. E.g.:\nrun 3 times a week\nread 20 minutes",
    bad_goals: "Write one to three goals, one per line, short (up to 120 characters): what and how often.",
    ask_remind: "When should I remind you? Write a time like 20:00. /skip — no reminders.",
    bad_remind: "Write a time as HH:MM, e.g. 20:00, or /skip.",
    goals_request:
      'Help the user phrase their coaching goals: for each, a short concrete wording (up to 80 characters) with a frequency: "daily" or "N times a week". Their goals: {goals}. Answer with the goals only, one per line, as many as they gave, no numbering or comments.',
    goals_suggested: 'Take these wordings? "yes" takes them, "mine" keeps yours (change them later with /goal edit).',
    location_zone: "Time zone from your location: {zone}.",
    ask_photos: 'Send photos for a mood board — what inspires you (several are fine). Write "done" when finished. /skip — skip.',
    photo_saved: 'Photo saved ({count}). Another one, or "done".',
    profile_request: "Write a short coaching profile of the user (3-5 sentences) from their answers: {answers}. Address them by name.",
    confirm_profile: 'Is this right? Answer "yes" to start, or "edit" to go through the questions again.',
    onboarding_done: "All set! /goals — goals, /done — check in, /stats — progress, /help — all commands.",
    help: "Commands:\n/goals — goals\n/goal add TEXT — new goal\n/done [number] — done today, /done yesterday — for yesterday\n/undo — take back the last check-in\n/stats — points, level, streaks\n/week — weekly summary\n/remind HH:MM or /remind off\n/pause 7d, /resume — vacation\n/stop — no reminders\n/export — my data, /delete — erase everything",
    no_goals: "No goals yet. Add one: /goal add run 3 times a week",
    goals_header: "Your goals:",
    goal_added: "Goal added: {goal}",
    ask_goal_edit: 'Write the new wording of "{goal}" (its check-ins stay with it).',
    too_many_goals: "You already have {max} active goals. Archive one to add another.",
    which_goal: "Which goal? Write /done and its number: {list}",
    done: "✅ {goal} — checked in for {day}. +{points} points (total {total}, level {level}). Streak: {streak}",
    backfill_range: "Only the last 7 days can be checked in.",
    undone: "Taken back: {goal} for {day}, −{points} points (total {total}).",
    nothing_to_undo: "Nothing to undo.",
    remind_set: "I'll remind you at {time} ({zone}).",
    remind_off: "Reminders are off.",
    stopped: "I won't write first any more. /start turns it back on.",
    resumed: "Welcome back! Reminders are on.",
    paused: "Paused until {until} inclusive: streaks won't break. /resume comes back earlier.",
    unpaused: "Pause ended.",
    bad_pause: "Write how long, e.g. /pause 7d (1 to 60 days).",
    reminder: "{name}, a reminder about today's goals: {goals}. Check in: /done",
    reminder_request:
      "Write the user a short friendly reminder (1-2 sentences) about the goals not checked in today: {goals}. Address them by name, use their numbers, and end by suggesting /done to check in. The reminder text only.",
    week_request:
      "Write 2-3 sentences for the user's weekly summary: praise what they did, gently encourage where nothing was recorded. The bot prints the numbers itself below your words, so write no numbers or dates. The week: {summary}",
    stats: "Points: {points}, level {level} ({to_next} to the next).\n{goals}\nThis week: {week}",
    week_summary: "Week {from} — {to}:\nCheck-ins: {checkins}, points: {points}\n{goals}\nBest day: {best_day}",
    not_recorded: "not recorded",
    export_caption: "Your data",
    private_only: "This command works only in a private chat with the bot: send it to me directly.",
    delete_confirm: 'Erase all your data (goals, check-ins, messages)? This cannot be undone. Write "delete" to confirm.',
    deleted: "All your data is erased. /start to begin again.",
    delete_cancelled: "Deletion cancelled.",
    unknown_command: "I don't know that command. /help lists them.",
  },
} as const;

/** The key of one text. */
export type TextKey = keyof (typeof TEXTS)["ru"];

/** Every text key, for the config schema. */
export const TEXT_KEYS = Object.keys(TEXTS.ru) as TextKey[];

/** Fills `{name}` placeholders; unknown ones stay as written. */
export function fill(template: string, vars: Record<string, string | number> = {}): string {
  return template.replace(/\{([a-z_]+)\}/g, (m, k: string) => (vars[k] !== undefined ? String(vars[k]) : m));
}
