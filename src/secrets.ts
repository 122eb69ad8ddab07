/**
 * The secret values this process knows (API keys, bot tokens, passwords from the bot configs and
 * secret-named environment variables), so text that leaves the process in stored form (the
 * `messages.error` failure reasons shown by `bots dialogs` and mailed in reports) never carries
 * one: a proxy that echoes the key in its 401 body, a Bot API URL with the token in an error.
 * The log files scrub the same values (src/logging.ts).
 */

import type { BotConfig } from "./config/schema.js";

/** Shortest value treated as a secret (shorter ones would match ordinary words). */
export const MIN_SECRET_LENGTH = 6;

const known = new Set<string>();

/** Adds values to scrub; empty and short ones (under {@link MIN_SECRET_LENGTH}) are ignored. */
export function registerSecrets(values: Iterable<string | null | undefined>): void {
  for (const v of values) if (v && v.length >= MIN_SECRET_LENGTH) known.add(v);
}

/** Environment variables whose names say they hold a secret (`*_TOKEN`, `*_SECRET`, `*_PASSWORD`, `*_KEY`, …). */
const SECRET_NAME = /(TOKEN|SECRET|PASSWORD|PASSWD|PASS|API_?KEY|_KEY)$/i;

/** Registers the values of the secret-named variables of an environment (`.env` and the process's). */
export function registerEnvSecrets(env: Record<string, string | undefined>): void {
  registerSecrets(
    Object.entries(env)
      .filter(([k]) => SECRET_NAME.test(k))
      .map(([, v]) => v),
  );
}

/** `text` with every registered secret replaced by `[REDACTED]` (longest first, so a key containing another is removed whole). */
export function scrubSecrets(text: string): string;
export function scrubSecrets(text: string | null | undefined): string | null | undefined;
export function scrubSecrets(text: string | null | undefined): string | null | undefined {
  if (!text) return text;
  let out = text;
  for (const s of [...known].sort((a, b) => b.length - a.length)) if (out.includes(s)) out = out.split(s).join("[REDACTED]");
  return out;
}

/** The secret values of bot configs: API keys, tokens, callback secrets, passwords (those of at least {@link MIN_SECRET_LENGTH}). */
export function botSecrets(bots: BotConfig[]): string[] {
  const out: string[] = [];
  for (const b of bots) {
    out.push(b.llm.api_key);
    if (b.tg) out.push(b.tg.token, b.tg.webhook?.secret_token ?? "");
    if (b.vk) out.push(b.vk.token, b.vk.callback?.secret ?? "", b.vk.callback?.confirmation ?? "");
    const g = b["2gis"];
    if (g) out.push(g.password ?? "", g.token ?? "");
    if (b.websocket?.token) out.push(b.websocket.token);
    if (b.smtp?.password) out.push(b.smtp.password);
  }
  return out.filter((s) => s.length >= MIN_SECRET_LENGTH);
}
