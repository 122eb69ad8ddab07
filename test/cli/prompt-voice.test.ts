import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { cli } from "../support/cli.js";
import { lastUserText } from "../support/openai-server.js";
import { PROMPT_ENV, promptFixture } from "../support/prompt-fixture.js";

describe("bots prompt test --voice", () => {
  test("a local audio file is uploaded to /v1/audio/transcriptions, and the transcript is answered; a missing file is exit 2", async () => {
    const f = await promptFixture();
    try {
      const file = path.join(f.fx.configDir, "shop-tg.yaml");
      writeFileSync(
        file,
        readFileSync(file, "utf8").replace("  max_retries: 0", "  max_retries: 0\n  transcription: { enabled: true, language: en, model: whisper-x }"),
      );
      const audio = Buffer.concat([Buffer.from("ID3\u0003"), Buffer.from("Do you deliver on Sundays?")]);
      const mp3 = f.fx.write("voices/q.mp3", "");
      writeFileSync(mp3, audio);
      const r = await cli(["--config-dir", f.fx.configDir, "prompt", "test", "shop-tg", "--voice", mp3], PROMPT_ENV);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(f.llm.transcriptions.length, 1);
      const t = f.llm.transcriptions[0]!;
      assert.deepEqual([t.model, t.language, t.filename, t.type], ["whisper-x", "en", "voice.mp3", "audio/mpeg"]);
      assert.ok(t.bytes.equals(audio));
      assert.equal(lastUserText(f.llm.requests[0]!), "Do you deliver on Sundays?");
      assert.match(r.stdout, /voice \(\d+ ms\): Do you deliver on Sundays\?/);
      assert.match(r.stdout, /echo: Do you deliver on Sundays\?/);

      const json = await cli(["--config-dir", f.fx.configDir, "--json", "prompt", "test", "shop-tg", "--voice", mp3, "Привет."], PROMPT_ENV);
      assert.equal(json.code, 0, json.stderr);
      const out = JSON.parse(json.stdout) as { text: string; transcript: string };
      assert.equal(out.transcript, "Do you deliver on Sundays?");
      assert.equal(out.text, "echo: Привет.\nDo you deliver on Sundays?");

      const missing = await cli(["--config-dir", f.fx.configDir, "prompt", "test", "shop-tg", "--voice", "nope.ogg"], PROMPT_ENV);
      assert.equal(missing.code, 2);
      assert.match(missing.stderr, /cannot read nope\.ogg: no such file/);
      assert.equal(f.llm.transcriptions.length, 2);
    } finally {
      await f.stop();
    }
  });
});
