const UNIT_BYTES: Record<string, number> = { b: 1, kb: 1024, kib: 1024, mb: 1024 ** 2, mib: 1024 ** 2, gb: 1024 ** 3, gib: 1024 ** 3 };

/**
 * Reads a size in bytes written as a number with an optional unit, case-insensitive: `500000`,
 * `512KB`, `5MB`, `1.5 MiB`. KB and MB are binary (1 KB = 1024 bytes, as KiB and MiB).
 * @returns whole bytes, or undefined when the text is not such a size
 */
export function byteSize(text: string | number): number | undefined {
  if (typeof text === "number") return Number.isInteger(text) && text >= 0 ? text : undefined;
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]i?b|b)?$/i.exec(text.trim());
  return m ? Math.round(Number(m[1]) * UNIT_BYTES[(m[2] ?? "b").toLowerCase()]!) : undefined;
}

/** Writes bytes readably: 5242880 → `5MB`, 1536 → `1.5KB`, 900 → `900B`. */
export function formatBytes(n: number): string {
  for (const [unit, size] of [
    ["GB", 1024 ** 3],
    ["MB", 1024 ** 2],
    ["KB", 1024],
  ] as const) {
    if (n >= size) return `${Math.round((n / size) * 10) / 10}${unit}`;
  }
  return `${n}B`;
}
