/**
 * vite-node configuration for `make bench`.
 *
 * The benchmark reuses the kernel tests' helpers (test/helpers/net.ts,
 * traffic.ts), and net.ts imports env.ts, which imports `describe`/`it` from
 * vitest at load time; outside a vitest run that import throws. Until
 * env.ts's vitest-free parts live in a module of their own, "vitest" resolves
 * here to a stand-in whose describe/it refuse to be called.
 */
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

export default defineConfig({
  resolve: {
    alias: { vitest: fileURLToPath(new URL('./lib/vitest-standin.ts', import.meta.url)) },
  },
});
