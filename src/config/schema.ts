import * as z from "zod";
import { byteSize } from "../lib/bytes.js";
import { durationMs } from "../lib/duration.js";
import { featuresSchema } from "./features.js";

/**
 * zod schema of one bot YAML (docs/architecture.md, design summary). Every object is strict: an unknown key is an error, so a
 * typo never passes silently. Defaults are declared here and nowhere else.
 */

/** Credits with at most two decimals (stored as integer hundredths). */
const credits = z
  .number()
  .nonnegative()
  .refine((v) => Math.abs(v * 100 - Math.round(v * 100)) < 1e-6, {
    message: "at most two decimals (hundredths of a credit)",
  });

/** Bot API `getFile` downloads at most 20 MB; OpenAI takes at most 20 MB per picture. */
export const MAX_IMAGE_BYTES = 20 * 1024 ** 2;

/**
 * `llm.vision` (docs/images.md): pictures sent to the model as base64 `image_url` parts. Off by
 * default: the model must support image input.
 */
const visionSchema = z.strictObject({
  /** Send pictures to the model. @defaultValue false */
  enabled: z.boolean().default(false),
  /** OpenAI `image_url.detail`: `low` is 85 tokens a picture on OpenAI. @defaultValue low */
  detail: z.enum(["low", "high", "auto"]).default("low"),
  /** Pictures of one message sent to the model; the rest are left out (logged). @defaultValue 4 */
  max_images: z.number().int().min(1).max(10).default(4),
  /**
   * Largest picture downloaded, bytes: a number or `512KB`, `5MB` (binary units). Larger ones
   * are refused and the text is answered alone. At most 20MB. @defaultValue 5MB
   */
  max_bytes: z
    .union([z.number(), z.string()])
    .default("5MB")
    .refine((v) => byteSize(v) !== undefined, { message: "a size like 5MB, 512KB or a number of bytes" })
    .transform((v) => byteSize(v)!)
    .refine((v) => v > 0 && v <= MAX_IMAGE_BYTES, { message: "between 1 byte and 20MB (the Bot API getFile limit)" }),
  /** Sent free of charge for a picture without text while vision is off; null: recorded, not answered (`skipped`). */
  no_vision_reply: z.string().min(1).nullable().default(null),
});

/**
 * `llm.transcription` (docs/voice.md): voice messages (Telegram `voice`, `audio`, `video_note`;
 * VK `audio_message`) transcribed through the OpenAI-compatible `/v1/audio/transcriptions` of
 * `llm.base_url`, then answered like text. Off by default.
 */
const transcriptionSchema = z.strictObject({
  /** Transcribe voice messages. @defaultValue false */
  enabled: z.boolean().default(false),
  /** The transcription model. @defaultValue whisper-1 */
  model: z.string().min(1).default("whisper-1"),
  /** ISO-639-1 language of the audio, a hint to the model. @defaultValue ru */
  language: z
    .string()
    .regex(/^[a-z]{2}$/, "a two-letter ISO-639-1 code such as ru or en")
    .default("ru"),
  /** Longest voice message transcribed, seconds; longer ones get `too_long_reply`. @defaultValue 300 */
  max_seconds: z.number().int().positive().max(3600).default(300),
  /**
   * Credits per minute of a voice message we transcribe, charged with the answer (by the second,
   * rounded to hundredths). A transcript the channel gave (VK) is not charged. @defaultValue 0
   */
  cost_per_minute: credits.default(0),
  /** Sent free of charge for a voice message longer than `max_seconds`; null: recorded `skipped`, nothing sent. */
  too_long_reply: z.string().min(1).nullable().default(null),
  /** Sent free of charge for a voice message while transcription is off; null: recorded `skipped`, nothing sent. */
  no_voice_reply: z.string().min(1).nullable().default(null),
});

const llmSchema = z.strictObject({
  model: z.string().min(1),
  api_key: z.string().min(1),
  /** Any OpenAI-compatible endpoint. @defaultValue the SDK's default (api.openai.com) */
  base_url: z.string().url().optional(),
  temperature: z.number().min(0).max(2).default(0.5),
  max_tokens: z.number().int().positive().default(600),
  /** Per request, seconds. @defaultValue 60 */
  timeout_s: z.number().positive().default(60),
  /** LLM calls in flight for this bot (distinct conversations). @defaultValue 8 */
  concurrency: z.number().int().positive().max(1000).default(8),
  /** Retries on 429/5xx/network errors. @defaultValue 3 */
  max_retries: z.number().int().min(0).max(10).default(3),
  /**
   * Streams the answer while the model writes it (Chat Completions `stream: true`), shown as a
   * Bot API `sendMessageDraft` preview in Telegram private chats; the answer itself is sent as
   * without it. Groups, VK and 2GIS have no drafts: there the model is asked as without it.
   * @defaultValue true
   */
  stream: z.boolean().default(true),
  /** Pictures to the model; after the transform `max_bytes` is in bytes. */
  vision: visionSchema.default({ enabled: false, detail: "low", max_images: 4, max_bytes: 5 * 1024 ** 2, no_vision_reply: null }),
  /** Voice messages to text. */
  transcription: transcriptionSchema.default({
    enabled: false,
    model: "whisper-1",
    language: "ru",
    max_seconds: 300,
    cost_per_minute: 0,
    too_long_reply: null,
    no_voice_reply: null,
  }),
});

const promptSchema = z.union([
  z.string().min(1),
  z.strictObject({ messages: z.string().optional(), comments: z.string().optional(), reviews: z.string().optional() }),
]);

const balanceSchema = z.strictObject({
  account: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/, "letters, digits, '_', '.', '-' (1-64)")
    .default("default"),
  /** Credits charged per answer. @defaultValue 5 */
  cost_per_reply: credits.default(5),
  /** Replies never take the balance below this many credits. @defaultValue 0 */
  stop_below: z
    .number()
    .refine((v) => Math.abs(v * 100 - Math.round(v * 100)) < 1e-6, { message: "at most two decimals" })
    .default(0),
  /** Sent (free) when the balance cannot pay; null sends nothing. */
  empty_reply: z.string().nullable().default(null),
});

const spamSchema = z.strictObject({
  max_per_minute: z.number().int().positive().default(6),
  max_length: z.number().int().positive().default(4000),
  block_links: z.boolean().default(false),
  stopwords: z.array(z.string()).default([]),
  duplicate_window_s: z.number().int().nonnegative().default(60),
});

const websocketSchema = z.strictObject({
  url: z.string().regex(/^wss?:\/\//, "must start with ws:// or wss://"),
  token: z.string().optional(),
  /** Events kept while disconnected; the oldest is dropped beyond it. @defaultValue 1000 */
  max_queue: z.number().int().positive().default(1000),
});

/**
 * A key that no longer exists: any value is refused with `message`, which says where the
 * setting went (so an old config fails `bots config check` with the way out, not a bare
 * "unrecognized key").
 */
function removedKey(message: string) {
  return z
    .unknown()
    .optional()
    .superRefine((v, ctx) => {
      if (v !== undefined) ctx.addIssue({ code: "custom", message });
    })
    .transform(() => undefined);
}

const INGRESS_MOVED =
  "removed: `bots start` serves webhooks and callbacks on its one HTTP server (--http-port, --http-host) at /tg/<bot> and /vk/<bot>; delete this key (docs/scaling.md)";

const tgSchema = z.strictObject({
  token: z.string().regex(/^\d+:[A-Za-z0-9_-]+$/, "looks like 123456:ABC-DEF… (from @BotFather)"),
  /** Bot API server. @defaultValue https://api.telegram.org */
  api_root: z.string().url().default("https://api.telegram.org"),
  mode: z.enum(["polling", "webhook"]).default("polling"),
  webhook: z
    .strictObject({
      /**
       * Public HTTPS base URL of the instances (a load balancer in front of every `bots start`):
       * the webhook set with setWebhook is `<url>/tg/<bot>`.
       */
      url: z.string().url(),
      /** Sent back by Telegram in X-Telegram-Bot-Api-Secret-Token. */
      secret_token: z.string().regex(/^[A-Za-z0-9_-]{1,256}$/, "1-256 of A-Z a-z 0-9 _ -"),
      port: removedKey(INGRESS_MOVED),
      path: removedKey(INGRESS_MOVED),
      host: removedKey(INGRESS_MOVED),
    })
    .optional(),
  /** In groups: answer when mentioned or replied to, every message, or never. @defaultValue mention */
  groups: z.enum(["mention", "all", "off"]).default("mention"),
  commands: z
    .strictObject({
      start: z.string().default("Здравствуйте! Напишите ваш вопрос."),
      help: z.string().default("Напишите вопрос обычным сообщением — я отвечу."),
    })
    .default({ start: "Здравствуйте! Напишите ваш вопрос.", help: "Напишите вопрос обычным сообщением — я отвечу." }),
});

/** `vk:` (docs/vk.md): a VK community bot through vk-io. */
const vkSchema = z.strictObject({
  /** Community access token (Manage → API usage → Access tokens) with messages and wall rights. */
  token: z.string().min(1),
  /** The community's id (positive; its wall's `owner_id` is the negative of it). */
  group_id: z.number().int().positive(),
  /** `callback`: VK POSTs events to our endpoint; `longpoll`: Bots Long Poll API, no public URL needed. @defaultValue callback */
  mode: z.enum(["callback", "longpoll"]).default("callback"),
  /** VK API base (vk-io `apiBaseUrl`); point it at a proxy or a local server. @defaultValue https://api.vk.com/method */
  api_base_url: z.string().url().default("https://api.vk.com/method"),
  /** VK API version sent as `v`. @defaultValue 5.199 */
  api_version: z
    .string()
    .regex(/^\d+\.\d+$/, "like 5.199")
    .default("5.199"),
  /**
   * The Callback API endpoint, required when mode is callback: served by `bots start` at
   * `/vk/<bot>` on its HTTP server (`--http-port`).
   */
  callback: z
    .strictObject({
      port: removedKey(INGRESS_MOVED),
      path: removedKey(INGRESS_MOVED),
      host: removedKey(INGRESS_MOVED),
      /** The string VK shows under "String to be returned", answered to the `confirmation` event. */
      confirmation: z.string().min(1),
      /**
       * The "Secret key" set in the Callback API settings; events without it get 403. Required in
       * callback mode (checked with the mode): without it anyone who finds the URL can post events.
       */
      secret: z.string().min(1).optional(),
    })
    .optional(),
  /** What the bot answers: private messages (`message_new`) and/or wall comments (`wall_reply_new`). @defaultValue [messages, comments] */
  answer: z.array(z.enum(["messages", "comments"])).default(["messages", "comments"]),
});

/** 2GIS business-account API (docs/2gis.md); every URL is configurable because it is undocumented. */
const twogisSchema = z.strictObject({
  /** @defaultValue https://api.account.2gis.com/api/1.0 */
  api_base_url: z.string().url().default("https://api.account.2gis.com/api/1.0"),
  /** Account login for `POST /users/auth` (with `password`), unless `token` is given. */
  login: z.string().optional(),
  password: z.string().optional(),
  /** A pre-issued bearer token; used instead of signing in (sign-in still follows a 401 when login/password are set). */
  token: z.string().optional(),
  /** Branches (filials) whose reviews are answered. */
  branch_ids: z.array(z.string().regex(/^\d+$/, "digits only")).min(1),
  /** Seconds between passes inside `bots start`. @defaultValue 300 */
  poll_interval_s: z.number().int().positive().default(300),
  /** Ratings (stars) that get an answer; others are recorded as `skipped`. @defaultValue [1,2,3,4,5] */
  answer_ratings: z.array(z.number().int().min(1).max(5)).min(1).default([1, 2, 3, 4, 5]),
  /** Ignore reviews created before this ISO 8601 date or date-time (UTC unless it has an offset). */
  since: z
    .string()
    .refine((s) => !Number.isNaN(parseSince(s)), { message: "an ISO 8601 date or date-time, e.g. 2025-01-31 or 2025-01-31T12:00:00Z" })
    .optional(),
  /** Answers per bot per pass at most; the rest wait for the next pass. @defaultValue 50 */
  max_per_run: z.number().int().positive().default(50),
  /** Answer reviews that have a rating but no text. @defaultValue false */
  answer_empty: z.boolean().default(false),
  /** Retries of one API call on 429/5xx/network errors. @defaultValue 3 */
  max_retries: z.number().int().min(0).max(10).default(3),
  /** Per API request, seconds. @defaultValue 30 */
  timeout_s: z.number().positive().default(30),
});

/**
 * Parses a `2gis.since` value: `YYYY-MM-DD` (midnight UTC) or an ISO 8601 date-time.
 * @returns epoch ms UTC, or NaN when malformed
 */
export function parseSince(value: string): number {
  if (/^\d{4}-\d\d-\d\d$/.test(value)) return Date.parse(`${value}T00:00:00Z`);
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d/.test(value)) return NaN;
  return Date.parse(/(Z|[+-]\d\d:?\d\d)$/.test(value) ? value : `${value}Z`);
}

/**
 * Outgoing mail server (SMTP, via nodemailer) for the operator e-mails of `features.leads` and
 * `features.report`. A top-level bot section because both features share it.
 */
const smtpSchema = z.strictObject({
  host: z.string().min(1),
  /** @defaultValue 587 (465 with `secure: true`) */
  port: z.number().int().min(1).max(65535).optional(),
  /** TLS from the first byte (port 465); false uses STARTTLS when the server offers it. @defaultValue false */
  secure: z.boolean().default(false),
  user: z.string().optional(),
  password: z.string().optional(),
  /** Sender, e.g. `Bots <bots@example.com>`. */
  from: z.string().min(3),
  /** Connection, greeting and socket timeout, seconds. @defaultValue 30 */
  timeout_s: z.number().positive().default(30),
});

/**
 * `recovery:` (docs/durability.md): what a start does with messages a crash
 * or restart stranded.
 */
const recoverySchema = z.strictObject({
  /**
   * Stranded messages younger than this are answered at the next start; older ones become
   * `expired` (refunded, answerable with `bots replay --send`). A duration like `90s`, `30m`,
   * `1h`, `2d`; `0` turns resuming off (every stranded message expires). 2GIS reviews have no
   * age limit. @defaultValue 1h
   */
  resume_within: z
    .union([z.string(), z.literal(0)])
    .default("1h")
    .refine((v) => v === 0 || v === "0" || durationMs(v) !== undefined, { message: "a duration like 90s, 30m, 1h or 2d, or 0 to turn resuming off" })
    .transform((v) => (v === 0 || v === "0" ? 0 : durationMs(v)!)),
});

/** Schema of one bot file, before the channel section is checked against `channel`. */
export const botConfigSchema = z
  .strictObject({
    name: z.string().regex(/^[a-z0-9-]+$/, "lowercase letters, digits and '-' only"),
    channel: z.enum(["tg", "vk", "2gis"]),
    enabled: z.boolean().default(true),
    /** Pins the bot to the `bots start` instance with this `--instance-id` (scale-out). */
    instance: z.string().min(1).max(191).optional(),
    /** IANA time zone for `{{now}}`, deadlines and reports. @defaultValue UTC */
    timezone: z.string().default("UTC").refine(isTimeZone, { message: "unknown IANA time zone" }),
    prompt: promptSchema,
    llm: llmSchema,
    history: z.strictObject({ max_messages: z.number().int().min(0).max(200).default(20) }).default({ max_messages: 20 }),
    /**
     * How answers are shown. `markdown`: the model's Markdown becomes Telegram entities, and clean
     * plain text on VK and 2GIS (src/lib/markdown.ts); `plain`: sent as the model wrote it.
     * @defaultValue { format: markdown }
     */
    reply: z.strictObject({ format: z.enum(["markdown", "plain"]).default("markdown") }).default({ format: "markdown" }),
    balance: balanceSchema.default({ account: "default", cost_per_reply: 5, stop_below: 0, empty_reply: null }),
    spam: spamSchema.default({ max_per_minute: 6, max_length: 4000, block_links: false, stopwords: [], duplicate_window_s: 60 }),
    websocket: websocketSchema.optional(),
    smtp: smtpSchema.optional(),
    tg: tgSchema.optional(),
    vk: vkSchema.optional(),
    "2gis": twogisSchema.optional(),
    features: featuresSchema,
    /** After the transform: `resume_within` in ms. */
    recovery: recoverySchema.default({ resume_within: 3_600_000 }),
  })
  .superRefine((bot, ctx) => {
    const section = bot.channel;
    if (!bot[section]) ctx.addIssue({ code: "custom", path: [section], message: `section '${section}' is required for channel ${section}` });
    for (const other of ["tg", "vk", "2gis"] as const) {
      if (other !== section && bot[other]) ctx.addIssue({ code: "custom", path: [other], message: `section '${other}' does not fit channel ${section}` });
    }
    if (bot.tg?.mode === "webhook" && !bot.tg.webhook) ctx.addIssue({ code: "custom", path: ["tg", "webhook"], message: "required when tg.mode is webhook" });
    if (bot.vk?.mode === "callback" && !bot.vk.callback)
      ctx.addIssue({ code: "custom", path: ["vk", "callback"], message: "required when vk.mode is callback" });
    if (bot.vk?.mode === "callback" && bot.vk.callback && bot.vk.callback.secret === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["vk", "callback", "secret"],
        message: "required when vk.mode is callback: set a Secret key on the community's Callback API page and here; without it anyone can post forged events",
      });
    }
    if (!bot.smtp && (bot.features.report || bot.features.leads?.notify_to.length))
      ctx.addIssue({ code: "custom", path: ["smtp"], message: "required for features.report and features.leads.notify_to (the mail server)" });
    if (bot.smtp && (bot.smtp.user === undefined) !== (bot.smtp.password === undefined))
      ctx.addIssue({ code: "custom", path: ["smtp"], message: "give both user and password, or neither" });
    const g = bot["2gis"];
    if (g && !g.token && !(g.login && g.password)) ctx.addIssue({ code: "custom", path: ["2gis"], message: "give either token or login and password" });
  });

/** A bot configuration after parsing, defaults filled in. */
export type BotConfig = z.infer<typeof botConfigSchema> & {
  /** Absolute path of the YAML file it came from. */
  file: string;
  /** Directory prompt paths are relative to (the parent of the config dir). */
  root: string;
};

/** Channel names as used on the command line and in configs. */
export type ChannelName = BotConfig["channel"];

/** Zones checked so far: building an Intl.DateTimeFormat costs ~0.2 ms, paid once per zone, not once per bot file. */
const zoneChecks = new Map<string, boolean>();

/** Whether Intl knows the IANA time zone (cached per zone). */
export function isTimeZone(tz: string): boolean {
  let ok = zoneChecks.get(tz);
  if (ok === undefined) {
    try {
      new Intl.DateTimeFormat("en-US", { timeZone: tz });
      ok = true;
    } catch {
      ok = false;
    }
    zoneChecks.set(tz, ok);
  }
  return ok;
}
