import { execFileSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import os from "node:os";
import path from "node:path";

/**
 * Mounts a fresh tmpfs of `size` (mount(8) syntax: `2m`, `4m`) on a new temp folder, for tests of
 * a full disk under SQLite. Needs root; fails loudly otherwise (never skips).
 * @returns the folder and `unmount()` (lazy, so files still open do not block it; removes the folder)
 */
export function mountTmpfs(size: string): { dir: string; unmount(): void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), "bots-tmpfs-"));
  execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir]);
  return {
    dir,
    unmount() {
      execFileSync("umount", ["-l", dir]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Writes zeros to `file` until its file system refuses (ENOSPC): the disk is then full. Delete the file to free the space. */
export function fillFileSystem(file: string): void {
  const fd = openSync(file, "w");
  try {
    for (const size of [1 << 16, 4096, 1]) {
      const chunk = Buffer.alloc(size);
      try {
        for (;;) writeSync(fd, chunk);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error;
      }
    }
  } finally {
    closeSync(fd);
  }
}
