#!/usr/bin/env node
// Static checks of the whole workspace, run by the test command before the
// tests: formatting (Prettier), lint (typescript-eslint, type-aware), import
// cycles (dpdm, type-only imports included) and unused files, exports and
// dependencies (knip). Prints one line per check and exits non-zero if any fails.
import { spawnSync } from 'node:child_process';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const bin = (name) => path.join(root, 'node_modules', '.bin', name);

const checks = [
  { name: 'format (prettier --check)', cmd: bin('prettier'), argv: ['--check', '--log-level', 'warn', '.'] },
  { name: 'lint (eslint)', cmd: bin('eslint'), argv: ['--max-warnings', '0', '.'] },
  {
    name: 'import cycles (dpdm)',
    cmd: bin('dpdm'),
    argv: ['--no-tree', '--no-warning', '--exit-code', 'circular:1', 'packages/*/src/**/*.ts'],
  },
  { name: 'unused code (knip)', cmd: bin('knip'), argv: ['--no-progress'] },
];

const only = process.argv.slice(2);
let failed = 0;
for (const c of checks) {
  if (only.length > 0 && !only.some((o) => c.name.startsWith(o))) continue;
  const started = Date.now();
  const r = spawnSync(c.cmd, c.argv, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  const ok = r.status === 0;
  if (!ok) {
    failed++;
    process.stdout.write(r.stdout);
    process.stdout.write(r.stderr);
  }
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${c.name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}
console.log(`checks: ${failed === 0 ? 'all passed' : `${failed} failed`}`);
process.exit(failed === 0 ? 0 : 1);
