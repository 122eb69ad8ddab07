/**
 * Repeats a channel's "typing" call (Telegram sendChatAction, VK messages.setActivity) now and
 * every `everyMs` until the returned function is called, never two at once: best effort, a
 * failed call goes to `onError` and nothing else happens. Made outside any send, so the calls
 * never wait for the write gate (src/channels/write-gate.ts): they are not answers.
 * @param everyMs ms between calls (Telegram shows the sign for 5 s)
 * @returns stops it (idempotent); a call in flight is left to finish
 */
export function keepTyping(call: () => Promise<unknown>, everyMs: number, onError: (error: unknown) => void): () => void {
  let inFlight = false;
  let stopped = false;
  const tick = () => {
    if (stopped || inFlight) return;
    inFlight = true;
    call()
      .catch(onError)
      .finally(() => (inFlight = false));
  };
  tick();
  const timer = setInterval(tick, everyMs);
  timer.unref();
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
