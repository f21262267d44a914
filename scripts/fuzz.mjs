#!/usr/bin/env node
// A long run of the API fuzz test (test/fuzz): FLOE_FUZZ_COUNT requests (default 50000) from
// FLOE_FUZZ_SEED (default: a new seed, printed, so a failure can be replayed with it).
import { spawnSync } from 'node:child_process';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const env = {
  ...process.env,
  FLOE_FUZZ_COUNT: process.env.FLOE_FUZZ_COUNT || '50000',
  FLOE_FUZZ_SEED: process.env.FLOE_FUZZ_SEED || String(Math.floor(Math.random() * 2 ** 31)),
};
console.log(
  `fuzz: ${env.FLOE_FUZZ_COUNT} requests, seed ${env.FLOE_FUZZ_SEED} (FLOE_FUZZ_SEED=${env.FLOE_FUZZ_SEED} replays it)`,
);
const r = spawnSync(
  path.join(root, 'node_modules', '.bin', 'vitest'),
  ['run', 'test/fuzz/api-fuzz.test.ts', ...process.argv.slice(2)],
  { cwd: root, env, stdio: 'inherit' },
);
process.exit(r.status ?? 1);
