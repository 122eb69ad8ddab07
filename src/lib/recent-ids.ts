/**
 * A bounded set of recently seen keys: adding past the limit forgets the oldest, and adding a
 * key again makes it the newest. Memory stays at most `limit` keys. Used for finished message ids
 * (src/core/pipeline.ts) and VK `event_id`s of acknowledged callbacks (src/channels/vk/worker.ts).
 */
export class RecentIds<K = number> {
  private readonly ids = new Set<K>();
  /** @param limit most keys kept (≥ 1) */
  constructor(private readonly limit: number) {}
  /** Remembers `id` as the newest, forgetting the oldest when more than `limit` are kept. */
  add(id: K): void {
    this.ids.delete(id);
    this.ids.add(id);
    if (this.ids.size > this.limit) this.ids.delete(this.ids.values().next().value!);
  }
  /** Whether `id` is among the kept keys. */
  has(id: K): boolean {
    return this.ids.has(id);
  }
}
