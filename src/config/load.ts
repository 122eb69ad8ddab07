import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { isMap, isPair, isScalar, isSeq, LineCounter, parse as parseYaml, parseDocument, visit, type Document, type Node } from "yaml";
import type { z } from "zod";
import { closest } from "../core/closest.js";
import { ConfigError } from "../errors.js";
import { promptFileProblem } from "../llm/prompt.js";
import { botConfigSchema, type BotConfig } from "./schema.js";

/** One problem found in a config file: printed as `file:line: field: message`. */
export interface ConfigProblem {
  /** Path of the file as given (relative to the working directory when possible). */
  file: string;
  /** 1-based line, or 0 when the problem concerns the whole file. */
  line: number;
  /** Dotted field path (`llm.model`), or '' for the file itself. */
  field: string;
  message: string;
}

export { loadEnv } from "./env.js";

/** Formats a problem the way `bots config check` prints it. */
export function formatProblem(p: ConfigProblem): string {
  return `${p.file}${p.line ? `:${p.line}` : ""}: ${p.field ? `${p.field}: ` : ""}${p.message}`;
}

/** A bot file that did not load: the bot name it declares (or its file name) and its problems. */
export interface BrokenFile {
  file: string;
  /** `name:` of the file, else the file name without `.yaml`. */
  name: string;
  problems: ConfigProblem[];
}

/** Result of loading a config directory: the valid bots and every problem found. */
export interface LoadedConfigs {
  bots: BotConfig[];
  problems: ConfigProblem[];
  /** Files read, in order. */
  files: string[];
  /** Files with a problem (a name used twice counts against the later file), in file order. */
  broken: BrokenFile[];
}

/** Options of {@link loadBotConfigs} and {@link loadBotFile}. */
export interface LoadOptions {
  /**
   * A variable the channel section (`tg`, `vk`, `2gis`) needs but that is not set gets a stand-in
   * instead of a problem: for commands that never talk to the channel (`bots prompt test`).
   */
  channelVarsOptional?: boolean;
}

/**
 * Loads every `*.yaml`/`*.yml` file directly in `configDir` (subfolders such as `examples/` are
 * not bots). Collects all problems instead of stopping at the first one.
 * @param env variables for `${VAR}` / `${VAR:-default}` interpolation
 */
export function loadBotConfigs(configDir: string, env: Record<string, string>, options: LoadOptions = {}): LoadedConfigs {
  const problems: ConfigProblem[] = [];
  const bots: BotConfig[] = [];
  const broken: BrokenFile[] = [];
  if (!existsSync(configDir)) {
    return { bots, files: [], broken, problems: [{ file: configDir, line: 0, field: "", message: "config directory does not exist (see --config-dir)" }] };
  }
  const files = readdirSync(configDir, { withFileTypes: true })
    .filter((d) => d.isFile() && /\.ya?ml$/.test(d.name))
    .map((d) => path.join(configDir, d.name))
    .sort();
  const root = path.resolve(configDir, "..");
  const seen = new Map<string, string>();
  for (const file of files) {
    let result: ReturnType<typeof loadBotFile>;
    try {
      result = loadBotFile(file, env, root, options);
    } catch (error) {
      // Whatever one file does (unreadable, hostile), it is that file's problem: the others load.
      const problem = { file: displayPath(file), line: 0, field: "", message: `cannot be loaded: ${(error as Error)?.message ?? String(error)}` };
      problems.push(problem);
      broken.push({ file: problem.file, name: path.basename(file).replace(/\.ya?ml$/, ""), problems: [problem] });
      continue;
    }
    const mine = [...result.problems];
    // Names clash whether or not the files are otherwise valid.
    const first = result.name ? seen.get(result.name) : undefined;
    if (result.name && first)
      mine.push({
        file: displayPath(file),
        line: result.nameLine,
        field: "name",
        message: `duplicate bot name '${result.name}' (also in ${displayPath(first)})`,
      });
    else if (result.name) seen.set(result.name, file);
    problems.push(...mine);
    if (mine.length) broken.push({ file: displayPath(file), name: result.name ?? path.basename(file).replace(/\.ya?ml$/, ""), problems: mine });
    else if (result.bot) bots.push(result.bot);
  }
  // By file, then line, as an editor walks them (stable: one line's problems keep their order).
  problems.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : a.line - b.line));
  return { bots, problems, files, broken };
}

/** Most nodes that YAML aliases of a bot file may expand to (yaml's `maxAliasCount`). */
const MAX_ALIAS_COUNT = 100;

/**
 * Loads and validates one bot file.
 * @param root directory that relative prompt paths start from
 */
export function loadBotFile(
  file: string,
  env: Record<string, string>,
  root: string,
  options: LoadOptions = {},
): { bot?: BotConfig; problems: ConfigProblem[]; name?: string; nameLine: number } {
  const shown = displayPath(file);
  const problems: ConfigProblem[] = [];
  const lc = new LineCounter();
  const source = readFileSync(file, "utf8");
  const doc = parseDocument(source, { lineCounter: lc, prettyErrors: true, uniqueKeys: true });
  for (const err of doc.errors) {
    problems.push({
      file: shown,
      line: err.linePos?.[0]?.line ?? 0,
      field: "",
      message: `YAML: ${err.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "")}`,
    });
  }
  if (problems.length) return { problems, nameLine: 0 };
  const lineOf = (node: Node | null | undefined): number => (node?.range ? lc.linePos(node.range[0]).line : 0);

  interpolate(
    doc,
    env,
    (node, field, message) => problems.push({ file: shown, line: lineOf(node), field, message }),
    options.channelVarsOptional ? channelStandIn : undefined,
  );
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (error) {
    // An alias bomb ("billion laughs": aliases of aliases, each doubling the data) is refused by
    // yaml once the expansion passes the limit, before it takes the memory.
    let line = 0;
    visit(doc, {
      Alias(_key, node) {
        line = lineOf(node as unknown as Node);
        return visit.BREAK;
      },
    });
    problems.push({ file: shown, line, field: "", message: `YAML: ${(error as Error).message} (aliases may expand to at most ${MAX_ALIAS_COUNT} nodes)` });
    return { problems, nameLine: 0 };
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    problems.push({ file: shown, line: 1, field: "", message: "expected a mapping of settings (name, channel, prompt, llm, ...)" });
    return { problems, nameLine: 0 };
  }
  const data = raw as Record<string, unknown>;
  if (data.name === undefined) data.name = path.basename(file).replace(/\.ya?ml$/, "");
  const nameLine = lineOf(doc.get("name", true) as Node | undefined) || 1;
  const name = typeof data.name === "string" ? data.name : undefined;
  if (problems.length) return { problems, name, nameLine };

  const parsed = botConfigSchema.safeParse(data);
  if (!parsed.success) for (const issue of parsed.error.issues) problems.push(...issueToProblems(issue, doc, data, shown, lineOf));
  // Prompt files are checked even when other fields are wrong, so every problem shows at once.
  const prompt = data.prompt;
  if (typeof prompt === "string" || (prompt !== null && typeof prompt === "object" && !Array.isArray(prompt))) {
    for (const [field, rel] of promptFiles({ prompt: prompt as BotConfig["prompt"] })) {
      if (typeof rel !== "string" || !rel) continue;
      const abs = path.resolve(root, rel);
      const line = lineOf(doc.getIn(field.split("."), true) as Node | undefined);
      if (!existsSync(abs)) problems.push({ file: shown, line, field, message: `prompt file ${rel} not found (looked at ${abs})` });
      else {
        const wrong = promptFileProblem(abs);
        if (wrong) problems.push({ file: shown, line, field, message: `prompt file ${rel} ${wrong}` });
      }
    }
  }
  if (!parsed.success || problems.length) return { problems, name, nameLine };
  return { bot: { ...parsed.data, file: path.resolve(file), root }, problems, name, nameLine };
}

/** The prompt files a bot refers to, as [field path, relative path]. */
export function promptFiles(bot: Pick<BotConfig, "prompt">): Array<[string, string]> {
  if (typeof bot.prompt === "string") return [["prompt", bot.prompt]];
  return Object.entries(bot.prompt)
    .filter((e): e is [string, string] => typeof e[1] === "string")
    .map(([k, v]) => [`prompt.${k}`, v]);
}

/**
 * Loads configs and throws when any problem was found. Used by commands that run bots.
 * @throws ConfigError listing every problem, one per line
 */
export function requireBotConfigs(configDir: string, env: Record<string, string>): BotConfig[] {
  const { bots, problems } = loadBotConfigs(configDir, env);
  if (problems.length) {
    throw new ConfigError("CONFIG_INVALID", problems.map(formatProblem).join("\n"), {
      hint: "run `bots config check` after fixing; every problem is listed above",
    });
  }
  return bots;
}

const VAR = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/**
 * A value of the right shape for a variable of a channel section that is not set, or undefined
 * outside the channel sections (see {@link LoadOptions.channelVarsOptional}).
 */
function channelStandIn(at: string[]): string | undefined {
  if (!["tg", "vk", "2gis"].includes(at[0] ?? "")) return undefined;
  const key = at[at.length - 1] ?? "";
  if (at[0] === "tg" && key === "token") return "0:not-used";
  if (/url|root/.test(key)) return "http://127.0.0.1";
  return "1";
}

/**
 * Replaces `${VAR}` and `${VAR:-default}` in every scalar, reporting missing variables (unless
 * `standIn` gives a value for the field).
 */
function interpolate(
  doc: Document,
  env: Record<string, string>,
  report: (node: Node, field: string, message: string) => void,
  standIn?: (at: string[]) => string | undefined,
): void {
  const walk = (node: unknown, at: string[]): void => {
    if (isMap(node)) {
      for (const pair of node.items) if (isPair(pair)) walk(pair.value, [...at, String(isScalar(pair.key) ? pair.key.value : pair.key)]);
    } else if (isSeq(node)) {
      for (const [i, item] of node.items.entries()) walk(item, [...at, String(i)]);
    } else if (isScalar(node) && typeof node.value === "string" && node.value.includes("${")) {
      const original = node.value;
      const whole = /^\$\{[^}]+\}$/.test(original);
      const value = original.replace(VAR, (_m, name: string, fallback: string | undefined) => {
        const v = env[name];
        if (v !== undefined && v !== "") return v;
        if (fallback !== undefined) return fallback;
        const stand = standIn?.(at);
        if (stand !== undefined) return stand;
        report(node, at.join("."), `environment variable ${name} is not set (add it to .env or the environment)`);
        return "";
      });
      // An unquoted `${PORT}` should become a number or boolean, as if written literally.
      if (whole && node.type === "PLAIN" && value !== "") {
        const typed = parseYaml(value) as unknown;
        node.value = typeof typed === "number" || typeof typed === "boolean" ? typed : value;
      } else {
        node.value = value;
      }
    }
  };
  walk(doc.contents, []);
}

function issueToProblems(
  issue: z.core.$ZodIssue,
  doc: Document,
  data: Record<string, unknown>,
  file: string,
  lineOf: (n: Node | null | undefined) => number,
): ConfigProblem[] {
  const at = issue.path.map(String);
  const nodeAt = (p: string[]): Node | undefined => {
    for (let i = p.length; i >= 0; i--) {
      const n = i === 0 ? doc.contents : (doc.getIn(p.slice(0, i), true) as Node | undefined);
      if (n) return n as Node;
    }
    return undefined;
  };
  if (issue.code === "unrecognized_keys") {
    const parent = at.length ? doc.getIn(at, true) : doc.contents;
    const known = knownKeys(at);
    return issue.keys.map((key) => {
      let line = lineOf(parent as Node);
      if (isMap(parent)) {
        const pair = parent.items.find((p) => isScalar(p.key) && String(p.key.value) === key);
        if (pair && isScalar(pair.key)) line = lineOf(pair.key);
      }
      const guess = closest(key, known);
      return { file, line, field: [...at, key].join("."), message: `unknown key${guess ? ` (did you mean '${guess}'?)` : ""}` };
    });
  }
  let message = issue.message;
  // A key that is not there at all is "required", whatever zod's check was (a discriminator
  // such as `channel` reports "Invalid option"): say so, with the values it takes.
  const missing =
    issue.path.length > 0 &&
    issue.path.reduce<unknown>((v, k) => (v !== null && typeof v === "object" ? (v as Record<PropertyKey, unknown>)[k] : undefined), data) === undefined;
  if (missing && issue.code === "invalid_value") message = `required: one of ${issue.values.map(String).join(", ")}`;
  else if (missing && (issue.code === "invalid_type" || issue.code === "invalid_union")) message = "required";
  const field = at.join(".");
  // A missing key has no node of its own: point at its parent mapping.
  return [{ file, line: lineOf(nodeAt(at)), field, message }];
}

/** Keys the schema knows at a path, for "did you mean". */
function knownKeys(at: string[]): string[] {
  let s: unknown = botConfigSchema;
  const unwrap = (x: unknown): unknown => {
    let cur = x as { def?: { type?: string; innerType?: unknown; in?: unknown } };
    while (cur?.def && ["optional", "nullable", "default", "pipe"].includes(cur.def.type ?? "")) {
      cur = (cur.def.innerType ?? cur.def.in) as typeof cur;
    }
    return cur;
  };
  const shapeOf = (x: unknown): Record<string, unknown> => {
    const d = (unwrap(x) as { def?: { type?: string; shape?: Record<string, unknown>; options?: unknown[] } }).def;
    if (d?.type === "object") return d.shape ?? {};
    if (d?.type === "union") return Object.assign({}, ...(d.options ?? []).map(shapeOf));
    return {};
  };
  for (const k of at) s = shapeOf(s)[k];
  return Object.keys(shapeOf(s));
}

/** A path relative to the working directory when it lies below it. */
export function displayPath(file: string): string {
  const rel = path.relative(process.cwd(), file);
  return rel && !rel.startsWith("..") && !path.isAbsolute(rel) ? rel : file;
}
