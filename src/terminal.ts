/**
 * Control characters that a terminal acts on: C0 (U+0000–U+001F) except tab and newline, DEL
 * (U+007F) and C1 (U+0080–U+009F, among them the 8-bit CSI U+009B). ESC opens the sequences
 * that move the cursor, clear the screen, set the title or write the clipboard (OSC 52).
 */
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

/**
 * Makes text from outside (user messages and names, stored errors, log lines, config values)
 * inert on a terminal: every control character but tab and newline is shown as `\xNN`, so
 * `ESC [2J` prints as the text `\x1b[2J` instead of clearing the screen. Used by every
 * human-readable CLI output of such text (`bots dialogs`, `bots logs tail`, `bots status`, the
 * console log); apply it before adding our own colours.
 */
export function terminalSafe(text: string): string {
  return text.replace(CONTROL, (ch) => `\\x${ch.charCodeAt(0).toString(16).padStart(2, "0")}`);
}
