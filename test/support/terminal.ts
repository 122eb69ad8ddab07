import { PassThrough, Writable } from "node:stream";

/**
 * A scripted terminal for @inquirer/prompts: each step waits until the question's text appears in
 * the output, then types the keys (`\r` is Enter, `\u001b[B` the down arrow). Pass
 * {@link context} as the prompts' context.
 */
export class ScriptedTerminal {
  readonly input = new PassThrough();
  /** Every prompt pipes into this and ends its pipe when done, so ending is ignored. */
  readonly output: Writable = Object.assign(
    new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        this.text += chunk.toString("utf8");
        this.next();
        cb();
      },
    }),
    {
      end() {
        return this as unknown as Writable;
      },
    },
  );
  /** Everything printed so far. */
  text = "";
  private seen = 0;

  constructor(private readonly steps: Array<[question: RegExp, keys: string]>) {}

  get context() {
    return { input: this.input, output: this.output, clearPromptOnDone: true };
  }

  /** Steps not answered yet. */
  get remaining(): number {
    return this.steps.length;
  }

  private next(): void {
    const step = this.steps[0];
    if (!step) return;
    const fresh = this.text.slice(this.seen);
    if (!step[0].test(fresh)) return;
    this.seen = this.text.length;
    this.steps.shift();
    setImmediate(() => this.input.write(step[1]));
  }
}
