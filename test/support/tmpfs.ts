import { execFileSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, rmdirSync, rmSync, writeSync } from "node:fs";
import os from "node:os";
import path from "node:path";

/** Mount points of {@link mountTmpfs} not unmounted yet; unmounted at process exit whatever happens. */
const mounted = new Set<string>();
process.once("exit", () => {
  for (const dir of mounted) unmountQuietly(dir);
});

function unmountQuietly(dir: string): void {
  try {
    // Lazy: succeeds even while a killed child's file is still being closed.
    execFileSync("umount", ["-l", dir], { stdio: "ignore" });
  } catch {
    // already gone
  }
  try {
    rmdirSync(dir);
  } catch {
    // not empty or gone
  }
  mounted.delete(dir);
}

/** A small tmpfs the test owns: a file system it can fill (ENOSPC for every write) and free again. */
export interface Tmpfs {
  /** The mount point (a fresh folder under the OS temp dir). */
  dir: string;
  /** Writes a filler file until the file system has not one byte left. */
  fill(): void;
  /** Deletes the filler: writes succeed again. */
  free(): void;
  /** Unmounts (lazily) and removes the mount point; safe to call twice. */
  unmount(): void;
}

/**
 * Mounts a tmpfs of `sizeMb` MiB (`mount -t tmpfs -o size=…`, needs root) on a fresh folder. It is
 * unmounted by {@link Tmpfs.unmount} or, at the latest, when the test process exits.
 * @throws Error when mount fails (not root, no tmpfs)
 */
export function mountTmpfs(sizeMb: number): Tmpfs {
  const dir = mkdtempSync(path.join(os.tmpdir(), "bots-tmpfs-"));
  execFileSync("mount", ["-t", "tmpfs", "-o", `size=${sizeMb}m`, "tmpfs", dir]);
  mounted.add(dir);
  const filler = path.join(dir, ".filler");
  return {
    dir,
    fill() {
      const fd = openSync(filler, "a");
      try {
        for (const size of [1 << 20, 1 << 12, 1]) {
          const chunk = Buffer.alloc(size, 0x55);
          for (;;) {
            try {
              writeSync(fd, chunk);
            } catch (error) {
              if ((error as NodeJS.ErrnoException).code === "ENOSPC") break;
              throw error;
            }
          }
        }
      } finally {
        closeSync(fd);
      }
    },
    free() {
      rmSync(filler, { force: true });
    },
    unmount() {
      if (mounted.has(dir)) unmountQuietly(dir);
    },
  };
}
