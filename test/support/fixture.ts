import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

/**
 * A temporary project folder for one test: `configs/`, `prompts/`, `logs/`, `.env`.
 */
export class Fixture {
  readonly root = mkdtempSync(path.join(os.tmpdir(), "bots-fx-"));
  readonly configDir = path.join(this.root, "configs");
  readonly logDir = path.join(this.root, "logs");

  constructor() {
    mkdirSync(this.configDir, { recursive: true });
    mkdirSync(path.join(this.root, "prompts"), { recursive: true });
  }

  /** Writes a file relative to the root and returns its absolute path. */
  write(rel: string, content: string): string {
    const file = path.join(this.root, rel);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, content);
    return file;
  }

  /** Writes `configs/<name>.yaml`. */
  bot(name: string, yaml: string): string {
    return this.write(`configs/${name}.yaml`, yaml);
  }

  /**
   * Writes `prompts/p.md` ("Be brief.") and `configs/<name>.yaml` for a polling Telegram bot
   * whose key and token come from `OPENAI_API_KEY` and `TG_TOKEN`; `llmUrl` and `apiRoot` point it
   * at the local model and Bot API servers, `extra` adds top-level YAML lines.
   */
  tgBot(name: string, o: { llmUrl?: string; apiRoot?: string; extra?: string[] } = {}): string {
    this.write("prompts/p.md", "Be brief.");
    return this.bot(
      name,
      [
        "channel: tg",
        "prompt: prompts/p.md",
        "llm:",
        "  model: m",
        "  api_key: ${OPENAI_API_KEY}",
        ...(o.llmUrl ? [`  base_url: ${o.llmUrl}`] : []),
        "tg:",
        "  token: ${TG_TOKEN}",
        ...(o.apiRoot ? [`  api_root: ${o.apiRoot}`] : []),
        ...(o.extra ?? []),
      ].join("\n"),
    );
  }

  cleanup(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}
