import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Message } from "telegraf/types";
import { pictures } from "../../src/channels/telegram/translate.js";
import { TelegramFiles } from "../../src/channels/telegram/files.js";
import { vkPhotos } from "../../src/channels/vk/translate.js";
import { formatProblem, loadBotConfigs } from "../../src/config/load.js";
import { byteSize } from "../../src/lib/bytes.js";
import { attachImages, downloadImage, isImageRefusal, sniffImageMime, storedImages } from "../../src/core/images.js";
import { type ChannelError, LlmError } from "../../src/errors.js";
import { Fixture } from "../support/fixture.js";
import { closeServer, listenLocal, originOf } from "../support/http.js";
import { jpegFixture, pngImage } from "../support/images.js";

const kettle = jpegFixture("kettle");
const TOKEN = "123456:SECRET-token_abc";

describe("picture sizes, types and config", () => {
  test("byteSize reads numbers and binary units; rejects the rest", () => {
    assert.equal(byteSize("5MB"), 5 * 1024 * 1024);
    assert.equal(byteSize("512 kb"), 512 * 1024);
    assert.equal(byteSize("1.5MiB"), 1.5 * 1024 * 1024);
    assert.equal(byteSize(1000), 1000);
    assert.equal(byteSize("1000"), 1000);
    for (const bad of ["5 megabytes", "MB", "-1MB", "", "5TB"]) assert.equal(byteSize(bad), undefined, bad);
  });

  test("sniffImageMime reads magic numbers, not names", () => {
    assert.equal(sniffImageMime(kettle), "image/jpeg");
    assert.equal(sniffImageMime(pngImage(2, 2, [1, 2, 3])), "image/png");
    assert.equal(sniffImageMime(Buffer.from("RIFF\0\0\0\0WEBPVP8 ")), "image/webp");
    assert.equal(sniffImageMime(Buffer.from("GIF89a....")), "image/gif");
    assert.equal(sniffImageMime(Buffer.from("<html>")), null);
  });

  test("llm.vision: defaults, units, limits and typos reported with file:line", () => {
    const fx = new Fixture();
    try {
      fx.write("prompts/p.md", "hi");
      const yaml = (vision: string) =>
        ["channel: tg", "prompt: prompts/p.md", "llm:", "  model: m", "  api_key: k", ...(vision ? [`  vision: ${vision}`] : []), "tg:", "  token: 1:abc"].join(
          "\n",
        );
      fx.bot("a", yaml(""));
      fx.bot("b", yaml("{ enabled: true, detail: high, max_images: 2, max_bytes: 512KB, no_vision_reply: Опишите словами }"));
      fx.bot("c", yaml("{ max_bytes: 30MB, detial: low }"));
      fx.bot("d", yaml("{ max_bytes: lots, detail: ultra, max_images: 0 }"));
      const { bots, problems } = loadBotConfigs(fx.configDir, {});
      assert.deepEqual(bots.find((b) => b.name === "a")!.llm.vision, {
        enabled: false,
        detail: "low",
        max_images: 4,
        max_bytes: 5 * 1024 * 1024,
        no_vision_reply: null,
      });
      assert.deepEqual(bots.find((b) => b.name === "b")!.llm.vision, {
        enabled: true,
        detail: "high",
        max_images: 2,
        max_bytes: 512 * 1024,
        no_vision_reply: "Опишите словами",
      });
      const lines = problems.map(formatProblem).join("\n");
      assert.match(lines, /c\.yaml:6: llm\.vision\.max_bytes: between 1 byte and 20MB/);
      assert.match(lines, /c\.yaml:6: llm\.vision.*detial/);
      assert.match(lines, /d\.yaml:6: llm\.vision\.max_bytes: a size like 5MB/);
      assert.match(lines, /d\.yaml:6: llm\.vision\.detail/);
      assert.match(lines, /d\.yaml:6: llm\.vision\.max_images/);
    } finally {
      fx.cleanup();
    }
  });

  test("Telegram: the largest photo size within max_bytes (the smallest when none fits); image documents only", () => {
    const photo = [
      { file_id: "s", file_unique_id: "1", width: 90, height: 90, file_size: 1000 },
      { file_id: "l", file_unique_id: "3", width: 2560, height: 2560, file_size: 9_000_000 },
      { file_id: "m", file_unique_id: "2", width: 1280, height: 1280, file_size: 200_000 },
    ];
    assert.equal(pictures({ photo } as unknown as Message, 5 * 1024 * 1024)![0]!.file_id, "m");
    assert.equal(pictures({ photo } as unknown as Message, 500)![0]!.file_id, "s");
    assert.deepEqual(pictures({ document: { file_id: "d", file_unique_id: "x", mime_type: "image/webp", file_size: 10 } } as unknown as Message, 100), [
      { file_id: "d", mime: "image/webp", size: 10 },
    ]);
    assert.equal(pictures({ document: { file_id: "d", file_unique_id: "x", mime_type: "application/pdf" } } as unknown as Message, 100), undefined);
  });

  test("VK: the largest size of each photo attachment, orig_photo included; other attachments ignored", () => {
    const refs = vkPhotos([
      {
        type: "photo",
        photo: {
          sizes: [
            { type: "s", url: "https://sun9-1.userapi.com/s.jpg", width: 75, height: 75 },
            { type: "x", url: "https://sun9-1.userapi.com/x.jpg", width: 604, height: 604 },
          ],
          orig_photo: { url: "https://sun9-1.userapi.com/o.jpg", width: 1600, height: 1200 },
        },
      },
      { type: "sticker", sticker: {} },
      { type: "photo", photo: { sizes: [{ type: "m", url: "https://sun9-2.userapi.com/m.jpg", width: 130, height: 97 }] } },
      { type: "photo", photo: { sizes: [{ type: "m", url: "javascript:alert(1)", width: 1, height: 1 }] } },
    ]);
    assert.deepEqual(refs, [
      { url: "https://sun9-1.userapi.com/o.jpg", width: 1600, height: 1200 },
      { url: "https://sun9-2.userapi.com/m.jpg", width: 130, height: 97 },
    ]);
    assert.equal(vkPhotos([]), undefined);
  });

  test("stored references: objects kept, bare file_ids of older rows read as {file_id}", () => {
    assert.deepEqual(storedImages(["abc", { url: "https://x/y.jpg", size: 3 }, 5, null]), [{ file_id: "abc" }, { url: "https://x/y.jpg", size: 3 }]);
    assert.equal(storedImages(undefined), undefined);
  });

  test("attachImages: text part first, then pictures; a placeholder for pictures left out; refusal detection", () => {
    const part = { type: "image_url" as const, image_url: { url: "data:image/png;base64,AA==", detail: "low" as const } };
    const p = attachImages(
      [
        { role: "system", content: "s" },
        { role: "user", content: "hi" },
      ],
      { parts: [part], left: 1 },
    );
    assert.deepEqual(p[1], { role: "user", content: [{ type: "text", text: "[photo] hi" }, part] });
    assert.deepEqual(attachImages([{ role: "user", content: "" }], { parts: [], left: 3 })[0], { role: "user", content: "[3 photos]" });
    assert.ok(
      isImageRefusal(new LlmError("LLM_REJECTED", "model API HTTP 400: Invalid content type. image_url is only supported by certain models.", { status: 400 })),
    );
    assert.ok(isImageRefusal(new LlmError("LLM_REJECTED", "model API HTTP 400: llava is not a multimodal model", { status: 400 })));
    assert.ok(!isImageRefusal(new LlmError("LLM_REJECTED", "model API HTTP 400: context length exceeded", { status: 400 })));
    assert.ok(!isImageRefusal(new LlmError("LLM_UNAVAILABLE", "model API HTTP 500: image server down", { status: 500 })));
    assert.ok(!isImageRefusal(new LlmError("LLM_REJECTED", "model API at https://vision.example.com/v1 HTTP 400: context length exceeded", { status: 400 })));
    assert.ok(
      isImageRefusal(new LlmError("LLM_REJECTED", "model API at https://vision.example.com/v1 HTTP 400: llava is not a multimodal model", { status: 400 })),
    );
  });
});

describe("downloading pictures", () => {
  let origin = "";
  let server: Awaited<ReturnType<typeof listenLocal>>;
  const hits: string[] = [];
  let flaky = 1;
  before(async () => {
    server = await listenLocal((req, res) => {
      const url = new URL(req.url ?? "/", "http://x");
      hits.push(url.pathname);
      if (url.pathname === "/chunked") {
        // No Content-Length: the limit must hold while reading.
        res.writeHead(200, { "content-type": "image/jpeg" });
        res.write(kettle);
        res.write(Buffer.alloc(4000, 1));
        res.end();
      } else if (url.pathname === "/declared") res.writeHead(200, { "content-length": "999999999" }).end();
      else if (url.pathname === "/html") res.writeHead(200, { "content-type": "image/jpeg" }).end("<html>login</html>");
      else if (url.pathname === "/flaky" && flaky-- > 0) res.writeHead(502).end();
      else if (url.pathname === "/flaky" || url.pathname === "/ok") res.writeHead(200).end(kettle);
      else if (url.pathname === `/bot${TOKEN}/getFile`) {
        let body = "";
        req.on("data", (c) => (body += c));
        req.on("end", () => {
          const id = (JSON.parse(body) as { file_id: string }).file_id;
          if (id === "huge") res.writeHead(400).end(JSON.stringify({ ok: false, error_code: 400, description: "Bad Request: file is too big" }));
          else if (id === "gone") res.writeHead(400).end(JSON.stringify({ ok: false, error_code: 400, description: "Bad Request: invalid file_id" }));
          else res.end(JSON.stringify({ ok: true, result: { file_id: id, file_unique_id: "u", file_size: kettle.length, file_path: "photos/a b.jpg" } }));
        });
      } else if (url.pathname === `/file/bot${TOKEN}/photos/a%20b.jpg`) res.end(kettle);
      else res.writeHead(404).end();
    });
    origin = originOf(server);
  });
  after(() => closeServer(server));

  const code = (p: Promise<unknown>) =>
    p.then(
      () => "ok",
      (e: ChannelError) => `${e.code}: ${e.message}`,
    );

  test("size limit by Content-Length and while reading; bytes that are not a picture; retries on 5xx; http(s) only", async () => {
    const o = { maxBytes: 2000, label: "pic", backoffMs: 10 };
    assert.match(await code(downloadImage(`${origin}/chunked`, o)), /^IMAGE_TOO_LARGE: pic: more than [\d.]+KB is over llm\.vision\.max_bytes \(2KB\)$/);
    assert.match(await code(downloadImage(`${origin}/declared`, o)), /^IMAGE_TOO_LARGE: pic: 953.7MB is over/);
    assert.match(await code(downloadImage(`${origin}/html`, o)), /^IMAGE_NOT_IMAGE/);
    assert.match(await code(downloadImage(`${origin}/missing`, o)), /^IMAGE_DOWNLOAD: pic: download answered HTTP 404$/);
    assert.equal(hits.filter((h) => h === "/missing").length, 1, "404 is not retried");
    const got = await downloadImage(`${origin}/flaky`, o);
    assert.ok(got.bytes.equals(kettle) && got.mime === "image/jpeg");
    assert.match(await code(downloadImage("file:///etc/passwd", o)), /^IMAGE_UNSUPPORTED/);
  });

  test("Telegram getFile then the file endpoint; refusals name the file_id, never the token", async () => {
    const files = new TelegramFiles(origin, TOKEN, { backoffMs: 10 });
    const got = await files.fetch({ file_id: "ok" }, 5000);
    assert.ok(got.bytes.equals(kettle));
    const huge = await code(files.fetch({ file_id: "huge" }, 5000));
    assert.match(huge, /^IMAGE_TOO_LARGE: file_id huge: getFile: Bad Request: file is too big$/);
    const small = await code(files.fetch({ file_id: "ok" }, 100));
    assert.match(small, /^IMAGE_TOO_LARGE: file_id ok: 686B is over/);
    const gone = await code(files.fetch({ file_id: "gone" }, 5000));
    assert.match(gone, /^IMAGE_DOWNLOAD: file_id gone: getFile: Bad Request: invalid file_id$/);
    const down = await code(new TelegramFiles("http://127.0.0.1:9", TOKEN, { backoffMs: 10 }).fetch({ file_id: "x" }, 5000));
    assert.match(down, /^IMAGE_DOWNLOAD: file_id x: getFile failed/);
    for (const m of [huge, small, gone, down]) assert.ok(!m.includes(TOKEN) && !m.includes("SECRET"));
  });
});
