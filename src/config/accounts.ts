import { readFileSync } from "node:fs";
import path from "node:path";
import { parse as parseYaml } from "yaml";

/**
 * Balance accounts that bot files name (`balance.account`, default `default`), read from the
 * YAML alone: a file that does not validate yet (a variable not set in this shell) still names
 * its account. A file that is not YAML at all names nothing (`bots config check` reports it).
 * Kept apart from ./load.js so `bots balance add` does not build the config schemas.
 * @param files YAML file names inside `configDir`
 */
export function accountsNamedIn(configDir: string, files: string[]): string[] {
  const names = new Set<string>();
  for (const f of files) {
    try {
      const doc = parseYaml(readFileSync(path.join(configDir, f), "utf8")) as { balance?: { account?: unknown } } | null;
      const account = doc?.balance?.account;
      names.add(typeof account === "string" ? account : "default");
    } catch {
      // Not YAML (or unreadable): it names nothing.
    }
  }
  return [...names];
}
