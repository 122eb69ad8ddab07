import { execFileSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readdirSync, rmdirSync, rmSync, writeSync } from "node:fs";
import os from "node:os";
import path from "node:path";

/** Mount points of {@link mountTmpfs} not unmounted yet; unmounted at process exit, SIGINT or SIGTERM. */
const mounted = new Set<string>();
const PREFIX = "bots-tmpfs-";
process.once("exit", () => {
  for (const dir of mounted) unmountQuietly(dir);
});
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    for (const dir of mounted) unmountQuietly(dir);
    process.kill(process.pid, signal);
  });
}

/** Unmounts what earlier test processes (named in the folder, now gone: SIGKILL, a test-runner timeout) left mounted. */
function sweepOrphans(): void {
  for (const name of readdirSync(os.tmpdir())) {
    const pid = Number(new RegExp(`^${PREFIX}(\\d+)-`).exec(name)?.[1] ?? NaN);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
    } catch {
      unmountQuietly(path.join(os.tmpdir(), name));
    }
  }
}

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
 * Mounts a tmpfs of `sizeMb` MiB (`mount -t tmpfs -o size=…`, needs root) on a fresh folder named
 * after this process. It is unmounted by {@link Tmpfs.unmount}, when the test process exits or is
 * stopped by SIGINT/SIGTERM, or — after a SIGKILL — by the next call of any later test process.
 * @throws Error when mount fails (not root, no tmpfs)
 */
export function mountTmpfs(sizeMb: number): Tmpfs {
  sweepOrphans();
  const dir = mkdtempSync(path.join(os.tmpdir(), `${PREFIX}${process.pid}-`));
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
