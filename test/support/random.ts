/**
 * A seeded pseudo-random generator (xorshift32) for generated test inputs: the same seed gives
 * the same sequence on every run, so a failure names an input that can be reproduced.
 * @returns `rand(n)`: an integer in [0, n)
 */
export function seededRandom(seed: number): (n: number) => number {
  let s = seed | 0 || 1;
  return (n) => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) % n;
  };
}
