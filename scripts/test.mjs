#!/usr/bin/env node
// The whole test suite: type-check and build every package, run the static
// checks (format, lint, import cycles, unused code), then run every
// test (unit, store on SQLite and PostgreSQL, API, agent over mTLS, CLI end to
// end) and close with one summary line.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const args = process.argv.slice(2);

function run(cmd, argv, opts = {}) {
  const r = spawnSync(cmd, argv, { cwd: root, stdio: 'inherit', ...opts });
  if (r.error) throw r.error;
  return r.status ?? 1;
}

console.log('== build (tsc -b) and type-check of the tests, benchmarks and scripts');
if (run('npm', ['run', '--silent', 'typecheck']) !== 0) {
  console.log('build: 0 passed, 1 failed');
  process.exit(1);
}

console.log('== static checks: format, lint, import cycles, unused code');
if (run('node', ['scripts/check.mjs']) !== 0) {
  console.log('checks: failed (see above); tests: 0 passed, 1 failed');
  process.exit(1);
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'floe-test-'));
const report = path.join(dir, 'vitest.json');
console.log('== tests (vitest)');
const code = run(path.join(root, 'node_modules', '.bin', 'vitest'), [
  'run',
  '--reporter=default',
  '--reporter=json',
  `--outputFile.json=${report}`,
  ...args,
]);
let summary = null;
try {
  const r = JSON.parse(readFileSync(report, 'utf8'));
  summary = {
    passed: r.numPassedTests,
    failed: r.numFailedTests,
    skipped: r.numPendingTests + r.numTodoTests,
    suitesFailed: r.numFailedTestSuites,
  };
} catch {
  // no report: vitest itself failed before running tests
}
rmSync(dir, { recursive: true, force: true });
if (summary) {
  const failed = summary.failed + (summary.failed === 0 && code !== 0 ? Math.max(1, summary.suitesFailed) : 0);
  console.log(`tests: ${summary.passed} passed, ${failed} failed, ${summary.skipped} skipped`);
} else {
  console.log('tests: 0 passed, 1 failed');
}
process.exit(code);
