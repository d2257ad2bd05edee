/**
 * Kernel-test guard. Project rule: kernel tests fail, never skip, when
 * CI=true. Outside CI a developer without root (or without the tools) gets a
 * skipped suite with a printed reason instead of a wall of EPERM errors.
 */
import { describe, it } from 'vitest';
import { isCI, missingPrerequisites, prerequisiteMessage } from './tools.js';

export { isCI, kernelTestsEnabled, KERNEL_TOOLS, missingPrerequisites, OPTIONAL_TOOLS, prerequisiteMessage, which } from './tools.js';

/** Options for describeKernel. */
export interface KernelSuiteOptions {
  /** Tools beyond KERNEL_TOOLS that this suite needs, e.g. ['ping', 'clang']. */
  tools?: readonly string[];
}

/**
 * `describe` for kernel tests: runs the suite when prerequisites are met;
 * otherwise skips it with a printed reason, except under CI=true where it
 * registers a failing test naming what is missing.
 */
export function describeKernel(name: string, fn: () => void, opts: KernelSuiteOptions = {}): void {
  const missing = missingPrerequisites(opts.tools ?? []);
  if (missing.length === 0) {
    describe(name, fn);
    return;
  }
  const message = prerequisiteMessage(missing);
  if (isCI()) {
    // Do not register the real body: its tests would only fail with
    // secondary errors (EPERM, ENOENT) that hide the actual cause.
    describe(name, () => {
      it('has its kernel test prerequisites', () => {
        throw new Error(message);
      });
    });
    return;
  }
  console.warn(`[${name}] skipped: ${message} (set CI=true to make this a failure)`);
  describe.runIf(false)(name, fn);
}
