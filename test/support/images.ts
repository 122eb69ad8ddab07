import { readFileSync } from "node:fs";
import type http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { deflateSync } from "node:zlib";

const here = path.dirname(fileURLToPath(import.meta.url));

/** A JPEG from test/fixtures/images (small real JPEGs encoded for these tests). */
export function jpegFixture(name: "kettle" | "receipt" | "screenshot"): Buffer {
  return readFileSync(path.join(here, "..", "fixtures", "images", `${name}.jpg`));
}

/** A real PNG (8-bit RGB, one colour), built here: signature, IHDR, IDAT (zlib), IEND with CRCs. */
export function pngImage(width: number, height: number, rgb: [number, number, number]): Buffer {
  const row = Buffer.concat([Buffer.from([0]), Buffer.from(Array.from({ length: width }, () => rgb).flat())]);
  const raw = Buffer.concat(Array.from({ length: height }, () => row));
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(raw)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, "latin1"), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

function crc32(b: Buffer): number {
  let c = ~0;
  for (const byte of b) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

/** One file the fake Bot API serves. */
interface FakeFile {
  bytes: Buffer;
  file_path: string;
  /** `file_size` getFile reports (a real size unless a test says otherwise). */
  file_size: number;
}

/**
 * What telegram-test-api lacks: Bot API `getFile` (`{ok, result: {file_id, file_unique_id,
 * file_size, file_path}}`, "Bad Request: invalid file_id", "Bad Request: file is too big" above
 * 20 MB) and the file endpoint `GET /file/bot<token>/<file_path>`, for one bot token. Plug it
 * into {@link startBotApiProxy}. Records every getFile and download.
 */
export class FakeBotFiles {
  private readonly files = new Map<string, FakeFile>();
  readonly getFileCalls: string[] = [];
  /** `file_path`s downloaded. */
  readonly downloads: string[] = [];
  private seq = 0;

  constructor(private readonly token: string) {}

  /**
   * Registers a file under `file_id`.
   * @param declaredSize the `file_size` getFile reports @defaultValue the bytes' length
   */
  add(fileId: string, bytes: Buffer, ext = "jpg", declaredSize = bytes.length): void {
    this.files.set(fileId, { bytes, file_path: `photos/file_${++this.seq}.${ext}`, file_size: declaredSize });
  }

  /** Answers getFile and file downloads; undefined for every other request. */
  handle(req: http.IncomingMessage, raw: Buffer): { status: number; type: string; body: Buffer } | undefined {
    const url = new URL(req.url ?? "/", "http://x");
    const json = (status: number, body: unknown) => ({ status, type: "application/json", body: Buffer.from(JSON.stringify(body)) });
    if (url.pathname.startsWith("/file/bot")) {
      const prefix = `/file/bot${this.token}/`;
      if (!url.pathname.startsWith(prefix)) return json(401, { ok: false, error_code: 401, description: "Unauthorized" });
      const filePath = decodeURIComponent(url.pathname.slice(prefix.length));
      this.downloads.push(filePath);
      const f = [...this.files.values()].find((x) => x.file_path === filePath);
      return f ? { status: 200, type: "application/octet-stream", body: f.bytes } : json(404, { ok: false, error_code: 404, description: "Not Found" });
    }
    if (!/\/getFile$/.test(url.pathname)) return undefined;
    if (url.pathname !== `/bot${this.token}/getFile`) return json(401, { ok: false, error_code: 401, description: "Unauthorized" });
    let fileId = url.searchParams.get("file_id") ?? "";
    if (raw.length) fileId = (JSON.parse(raw.toString("utf8")) as { file_id?: string }).file_id ?? fileId;
    this.getFileCalls.push(fileId);
    const f = this.files.get(fileId);
    if (!f) return json(400, { ok: false, error_code: 400, description: "Bad Request: invalid file_id" });
    if (f.file_size > 20 * 1024 * 1024) return json(400, { ok: false, error_code: 400, description: "Bad Request: file is too big" });
    return json(200, { ok: true, result: { file_id: fileId, file_unique_id: `u${fileId}`, file_size: f.file_size, file_path: f.file_path } });
  }
}
