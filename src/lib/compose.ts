/**
 * Middleware composition: a stage is `(ctx, next) => Promise<void>`; a stage that does
 * not call `next` ends the chain for that message.
 */
export type Next = () => Promise<void>;
/** One pipeline stage. */
export type Middleware<C> = (ctx: C, next: Next) => Promise<void>;

/**
 * Composes stages into one. Calling `next` twice from a stage is a programming error and
 * rejects, so a stage can never run the rest of the pipeline (and deliver) twice.
 */
export function compose<C>(stages: ReadonlyArray<Middleware<C>>): (ctx: C) => Promise<void> {
  return (ctx: C) => {
    const dispatch = (i: number): Promise<void> => {
      const stage = stages[i];
      if (!stage) return Promise.resolve();
      let called = false;
      return stage(ctx, () => {
        if (called) return Promise.reject(new Error(`next() called twice in pipeline stage ${i} (${stage.name || "anonymous"})`));
        called = true;
        return dispatch(i + 1);
      });
    };
    return dispatch(0);
  };
}
