#!/usr/bin/env node
import { run } from './program.js';

// The exit code is set, not forced, so pending output is flushed first.
process.exitCode = await run(process.argv.slice(2));
