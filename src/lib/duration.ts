const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/**
 * Reads a duration written as a number and one unit letter, lowercase: `90s`, `10m`, `24h`, `2d`,
 * `1w`, decimals allowed (`1.5h`).
 * @returns milliseconds, or undefined when the text is not such a duration
 */
export function durationMs(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([smhdw])$/.exec(text.trim());
  return m ? Math.round(Number(m[1]) * UNIT_MS[m[2]!]!) : undefined;
}

/**
 * Writes milliseconds as the largest unit that divides them: 3600000 → `1h`, 90000 → `90s`,
 * 1500 → `1500ms`.
 */
export function formatDuration(ms: number): string {
  for (const unit of ["w", "d", "h", "m", "s"]) {
    const size = UNIT_MS[unit]!;
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
