/** Shared helpers of the policy tests: build a policy line by line and read its diagnostics. */
import { parsePolicy, validatePolicy, type ValidationResult } from '../../../src/policy/index.js';

/** Interfaces that "exist" on the pretend host. */
export const HOST_INTERFACES = ['lo', 'eth0', 'eth1', 'eth2', 'eth3', 'eth4', 'eth5'];

/** Joins lines, so that a test reads its line numbers off the argument list (first argument = line 1). */
export function lines(...text: string[]): string {
  return `${text.join('\n')}\n`;
}

/** Validates policy text as policy.yaml on a host that has HOST_INTERFACES. */
export function validate(text: string): ValidationResult {
  return validatePolicy(parsePolicy(text, 'policy.yaml'), {
    interfaceExists: (name) => HOST_INTERFACES.includes(name),
  });
}

/** Every diagnostic as "line:column message" ("line:column warning: message" for warnings). */
export function problems(text: string): string[] {
  return validate(text).diagnostics.map(
    (d) => `${d.line}:${d.column} ${d.severity === 'warning' ? 'warning: ' : ''}${d.message}`,
  );
}

/** A valid policy's rules section on lo, for tests about rules only. */
export function withRules(...ruleLines: string[]): string {
  return lines('interfaces:', '  - name: lo', 'rules:', ...ruleLines);
}
