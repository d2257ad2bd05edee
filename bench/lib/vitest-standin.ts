/**
 * Stand-in for "vitest" when the benchmark runs under vite-node (see
 * bench/vite.config.ts): the test helpers only need these names to exist.
 */
function notInBenchmark(name: string): never {
  throw new Error(`vitest's ${name}() called from the benchmark: test suites cannot run under bench/main.ts`);
}

/** Never called by the benchmark. */
export function describe(): never {
  return notInBenchmark('describe');
}

/** Never called by the benchmark. */
export function it(): never {
  return notInBenchmark('it');
}
