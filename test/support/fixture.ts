import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

/**
 * A temporary project folder for one test (STYLE 12): `configs/`, `prompts/`, `logs/`, `.env`.
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

  cleanup(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}
