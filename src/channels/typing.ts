/**
 * How long an answer is prepared before "typing…" shows, ms. Telegram recommends the chat action
 * only "when a response from the bot will take a noticeable amount of time to arrive"
 * (sendChatAction): an answer ready sooner arrives without it, saving a call that counts against
 * the bot's request limits and a flicker before the answer.
 */
export const TYPING_AFTER_MS = 500;

/**
 * Repeats a channel's "typing" call (Telegram sendChatAction, VK messages.setActivity) from
 * `afterMs` on and every `everyMs` after it until the returned function is called, never two at
 * once: best effort, a failed call goes to `onError` and nothing else happens. Stopped before
 * `afterMs`, nothing is called. Made outside any send, so the calls never wait for the write gate
 * (src/channels/write-gate.ts): they are not answers.
 * @param everyMs ms between calls (Telegram shows the sign for 5 s)
 * @param afterMs ms before the first call (0: at once) @defaultValue {@link TYPING_AFTER_MS}
 * @returns stops it (idempotent); a call in flight is left to finish
 */
export function keepTyping(call: () => Promise<unknown>, everyMs: number, onError: (error: unknown) => void, afterMs = TYPING_AFTER_MS): () => void {
  let inFlight = false;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const tick = () => {
    if (stopped || inFlight) return;
    inFlight = true;
    call()
      .catch(onError)
      .finally(() => (inFlight = false));
  };
  const start = () => {
    if (stopped) return;
    tick();
    timer = setInterval(tick, everyMs);
    timer.unref();
  };
  if (afterMs > 0) {
    timer = setTimeout(start, afterMs);
    timer.unref();
  } else start();
  return () => {
    stopped = true;
    // The first call's timeout or the renewal interval (Node clears either with clearTimeout).
    clearTimeout(timer);
  };
}
