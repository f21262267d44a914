import { defineConfig } from 'vitest/config';

// Tests import the workspace packages from their TypeScript sources (the
// "floe-source" export condition), so they never run against a stale build.
export default defineConfig({
  resolve: { conditions: ['floe-source'] },
  ssr: { resolve: { conditions: ['floe-source'] } },
  test: {
    include: ['packages/*/src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    reporters: ['default'],
  },
});
