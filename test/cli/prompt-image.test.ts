import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { bin, cli } from "../support/cli.js";
import { jpegFixture, pngImage } from "../support/images.js";
import type { RecordedRequest } from "../support/openai-server.js";
import { PROMPT_ENV, promptFixture } from "../support/prompt-fixture.js";

/** Pictures (mime, bytes) in the last user message of a model request. */
function pictures(req: RecordedRequest): Array<{ mime: string; bytes: Buffer }> {
  const content = req.messages[req.messages.length - 1]!.content;
  if (!Array.isArray(content)) return [];
  return (content as Array<{ type: string; image_url?: { url: string } }>)
    .filter((p) => p.type === "image_url")
    .map((p) => {
      const m = /^data:(image\/[a-z]+);base64,(.+)$/.exec(p.image_url!.url)!;
      return { mime: m[1]!, bytes: Buffer.from(m[2]!, "base64") };
    });
}

/** The prompt fixture with `llm.vision` set. */
async function visionFixture(vision: string) {
  const f = await promptFixture();
  const file = path.join(f.fx.configDir, "shop-tg.yaml");
  writeFileSync(file, readFileSync(file, "utf8").replace("  max_retries: 0", `  max_retries: 0\n  vision: ${vision}`));
  return f;
}

describe("bots prompt test --image", () => {
  test("a local picture goes to the model as base64 data with the message; --cases takes image: per case", async () => {
    const f = await visionFixture("{ enabled: true, detail: auto }");
    try {
      const kettle = jpegFixture("kettle");
      const png = pngImage(3, 3, [255, 0, 0]);
      const jpg = f.fx.write("pics/kettle.jpg", "");
      writeFileSync(jpg, kettle);
      const pngFile = f.fx.write("pics/red.png", "");
      writeFileSync(pngFile, png);
      const r = await cli(["--config-dir", f.fx.configDir, "prompt", "test", "shop-tg", "--image", jpg, "Что", "это?"], PROMPT_ENV);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /test-model · 1 picture\(s\) · \d+ prompt/);
      const req = f.llm.requests[0]!;
      assert.deepEqual(pictures(req), [{ mime: "image/jpeg", bytes: kettle }]);
      assert.deepEqual((req.messages.at(-1)!.content as Array<{ type: string; text?: string }>)[0], { type: "text", text: "Что это?" });

      // A picture alone (no MESSAGE), two --image flags.
      const two = await cli(["--config-dir", f.fx.configDir, "prompt", "test", "shop-tg", "--image", jpg, "--image", pngFile], PROMPT_ENV);
      assert.equal(two.code, 0, two.stderr);
      assert.deepEqual(
        pictures(f.llm.requests[1]!).map((p) => p.mime),
        ["image/jpeg", "image/png"],
      );

      const cases = f.fx.write(
        "cases.yaml",
        [
          "- name: kettle",
          "  image: pics/kettle.jpg",
          "  message: Что это?",
          '  contains: "echo"',
          "- name: picture only",
          "  image: [pics/red.png]",
          "  max_chars: 100000",
        ].join("\n"),
      );
      const c = await cli(["--config-dir", f.fx.configDir, "prompt", "test", "shop-tg", "--cases", cases], PROMPT_ENV);
      assert.equal(c.code, 0, c.stdout + c.stderr);
      assert.deepEqual(pictures(f.llm.requests[2]!), [{ mime: "image/jpeg", bytes: kettle }]);
      assert.deepEqual(pictures(f.llm.requests[3]!), [{ mime: "image/png", bytes: png }]);

      const missing = f.fx.write("missing.yaml", ["- message: hi", "  image: pics/nope.jpg", "  contains: hi"].join("\n"));
      const bad = await cli(["--config-dir", f.fx.configDir, "prompt", "test", "shop-tg", "--cases", missing], PROMPT_ENV);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /missing\.yaml:2: cases\[0\]\.image: picture .*nope\.jpg not found/);
    } finally {
      await f.stop();
    }
  });

  test("with vision off, or a file that is not a picture, the model reads a [photo] placeholder and the output says so", async () => {
    const f = await visionFixture("{ enabled: false }");
    try {
      const jpg = f.fx.write("pics/k.jpg", "");
      writeFileSync(jpg, jpegFixture("receipt"));
      const off = await cli(["--config-dir", f.fx.configDir, "prompt", "test", "shop-tg", "--image", jpg, "Сколько?"], PROMPT_ENV);
      assert.equal(off.code, 0, off.stderr);
      assert.match(off.stderr, /llm\.vision\.enabled is false for shop-tg/);
      assert.match(off.stdout, /^echo: \[photo\] Сколько\?\n1 picture\(s\) not sent to the model \(llm\.vision\.enabled is false\)/);

      const f2 = await visionFixture("{ enabled: true }");
      try {
        const txt = f2.fx.write("notes.txt", "not a picture at all");
        const r = await cli(["--config-dir", f2.fx.configDir, "prompt", "test", "shop-tg", "--image", txt, "Сколько?"], PROMPT_ENV);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /^echo: \[photo\] Сколько\?\n1 picture\(s\) not sent to the model \(see the warnings above\)/);
        assert.match(r.stderr, /^warning: picture 1: .*notes\.txt: not a JPEG, PNG, WebP or GIF picture$/m, "the reason is printed without -v");
        assert.equal(pictures(f2.llm.requests[0]!).length, 0);
      } finally {
        await f2.stop();
      }
    } finally {
      await f.stop();
    }
  });

  test("a missing --image file is a usage error (exit 2, 'cannot read FILE'); the model is not asked", async () => {
    const f = await visionFixture("{ enabled: true }");
    try {
      const r = await bin(["--config-dir", f.fx.configDir, "prompt", "test", "shop-tg", "--image", "missing.jpg", "hi"], PROMPT_ENV, f.fx.root);
      assert.equal(r.code, 2, r.stdout + r.stderr);
      assert.match(r.stderr, /^error: cannot read missing\.jpg: no such file$/m);
      assert.equal(r.stdout, "");
      assert.equal(f.llm.requests.length, 0);
    } finally {
      await f.stop();
    }
  });
});
