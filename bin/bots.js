#!/usr/bin/env node
// The CLI is bundled by scripts/bundle.mjs (npm ci runs it through prepare).
import "../dist/bundle/main.js";
