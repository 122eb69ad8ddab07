#!/usr/bin/env node
// The CLI is bundled by scripts/bundle.mjs (npm ci runs it through prepare) into ES modules in
// dist/bundle/. This launcher is CommonJS (bin/package.json): Node sets up its ES module loader
// only when a command needs it. `bots`, `bots --help` and `bots --version` print what they
// printed when the bundle was built (dist/bundle/static-output.json, recorded by running it),
// which loads neither the loader nor commander; on a terminal whose width differs from the
// recorded one (commander wraps help to the terminal), the bundle runs as for any command.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

/** Writes all of `text` to file descriptor `fd`; a reader that went away ends the process with 141 (src/cli/main.ts). */
function write(fd, text) {
  const bytes = Buffer.from(text);
  for (let done = 0; done < bytes.length; ) {
    try {
      done += fs.writeSync(fd, bytes, done);
    } catch (error) {
      if (error.code === "EAGAIN") continue;
      if (error.code === "EPIPE") process.exit(141);
      throw error;
    }
  }
}

function recorded() {
  const outputs = path.join(__dirname, "../dist/bundle/static-output.json");
  const key = process.argv.slice(2).join(" ");
  // Only argument lists that were recorded: anything else (options, commands) runs the bundle.
  if (!["", "--help", "-h", "help", "-V", "--version"].includes(key) || !fs.existsSync(outputs)) return undefined;
  const { width, outputs: byArgs } = JSON.parse(fs.readFileSync(outputs, "utf8"));
  const output = byArgs[key];
  if (!output || (require("node:tty").isatty(1) && process.stdout.columns !== width)) return undefined;
  return output;
}

const output = recorded();
if (output) {
  write(1, output.stdout);
  write(2, output.stderr);
  process.exitCode = output.code;
} else {
  import("../dist/bundle/main.js");
}
