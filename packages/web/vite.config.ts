import { defineConfig } from 'vite';

// The app imports @floe/client/browser from its TypeScript sources (the "floe-source" condition), so the
// web build needs no earlier build of the client.
export default defineConfig({
  root: import.meta.dirname,
  resolve: { conditions: ['floe-source', 'module', 'browser', 'development|production'] },
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: false, target: 'es2022', chunkSizeWarningLimit: 800 },
  server: { proxy: { '/v1': { target: 'http://127.0.0.1:8443', ws: true } } },
});
