/**
 * Validation of a one-rule change at the cost of that rule. The rule itself
 * is validated in a policy where it is the only rule (validateOne: same
 * defaults, interfaces and other sections as the file); what only the whole
 * rule set reveals (unique names, one rule per port, bucket capacity) is
 * checked against an index of the rules in force (RuleIndex).
 *
 * It only ever says yes or "cannot tell": any problem, warning, or a case it
 * does not cover (rules restricted to some interfaces: profiles) sends the
 * caller to full validation, which then reports exactly what the file gets.
 */
import type { Direction, Protocol } from '../kernel/desired.js';
import { PS } from '../kernel/layout.js';
import { PORT_CELLS, tableBase } from './overlap.js';
import { parsePolicy } from './parse.js';
import type { PolicyEnv, PolicyRule, ValidPolicy } from './types.js';
import { bucketCount, MAX_SHAPED_BUCKETS, validatePolicy } from './validate.js';

const DIRECTIONS: readonly Direction[] = ['ingress', 'egress'];
const PROTOCOLS: readonly Protocol[] = ['tcp', 'udp'];

/**
 * The rule of a policy text holding exactly one rule, when that text is valid
 * with no warning at all; undefined otherwise (the caller validates fully).
 */
export function validateOne(text: string, file: string, env: PolicyEnv): { policy: ValidPolicy; rule: PolicyRule } | undefined {
  const { policy, diagnostics } = validatePolicy(parsePolicy(text, file), env);
  if (!policy || diagnostics.length || policy.rules.length !== 1) return undefined;
  return { policy, rule: policy.rules[0]! };
}

/**
 * Who claims each (direction, protocol, side, port) in a policy whose rules
 * all apply to every interface (one profile), and its bucket totals. Built
 * once per policy in force (one pass over the claimed ports); a change then
 * costs the ports of the rule it changes.
 */
export class RuleIndex {
  private readonly owners: (PolicyRule | undefined)[];
  private readonly names = new Map<string, PolicyRule>();
  private buckets = 0;
  private shaped = 0;

  private constructor(public policy: ValidPolicy) {
    this.owners = new Array<PolicyRule | undefined>(PORT_CELLS);
    for (const rule of policy.rules) {
      this.claim(rule, rule);
      this.names.set(rule.name, rule);
      const n = bucketCount(rule);
      this.buckets += n.buckets;
      this.shaped += n.shaped;
    }
  }

  /** The index of a policy, or undefined when some rule is restricted to some interfaces (profiles). */
  static of(policy: ValidPolicy): RuleIndex | undefined {
    if (policy.rules.some((r) => r.interfaces !== undefined)) return undefined;
    return new RuleIndex(policy);
  }

  /**
   * The policy with rules[index] replaced by `rule` (index = rules.length
   * appends; rule undefined removes), when the rule set stays valid; the
   * index then describes that policy. undefined when only full validation can
   * tell (the index is left as it was).
   */
  change(index: number, rule: PolicyRule | undefined): ValidPolicy | undefined {
    const rules = this.policy.rules;
    const before = rules[index];
    if (rule?.interfaces !== undefined) return undefined;
    if (rule) {
      const other = this.names.get(rule.name);
      if (other !== undefined && other !== before) return undefined;
      const was = before ? bucketCount(before) : { buckets: 0, shaped: 0 };
      const now = bucketCount(rule);
      if (this.shaped - was.shaped + now.shaped > MAX_SHAPED_BUCKETS) return undefined;
      if (this.buckets - was.buckets + now.buckets > PS.PS_MAX_SLOTS - 1) return undefined;
      if (!this.free(rule, before)) return undefined;
    }
    if (before) {
      this.claim(before, undefined);
      this.names.delete(before.name);
      const was = bucketCount(before);
      this.buckets -= was.buckets;
      this.shaped -= was.shaped;
    }
    if (rule) {
      this.claim(rule, rule);
      this.names.set(rule.name, rule);
      const now = bucketCount(rule);
      this.buckets += now.buckets;
      this.shaped += now.shaped;
    }
    // Later rules keep the line they were validated at: nothing reads PolicyRule.line after validation.
    const next = rule === undefined ? rules.filter((_, i) => i !== index) : index === rules.length ? [...rules, rule] : replaced(rules, index, rule);
    this.policy = { ...this.policy, rules: next };
    return this.policy;
  }

  /** True when every port the rule claims is free or held by `self`. */
  private free(rule: PolicyRule, self: PolicyRule | undefined): boolean {
    let free = true;
    this.each(rule, (cell) => {
      const owner = this.owners[cell];
      if (owner !== undefined && owner !== self) free = false;
    });
    return free;
  }

  /** Sets the owner of every port the rule claims (undefined releases them). */
  private claim(rule: PolicyRule, owner: PolicyRule | undefined): void {
    this.each(rule, (cell) => {
      if (owner !== undefined || this.owners[cell] === rule) this.owners[cell] = owner;
    });
  }

  private each(rule: PolicyRule, visit: (cell: number) => void): void {
    const directions = rule.direction === 'both' ? DIRECTIONS : [rule.direction];
    const protocols = rule.protocol === 'any' ? PROTOCOLS : [rule.protocol];
    for (const direction of directions) {
      for (const protocol of protocols) {
        const base = tableBase(direction, protocol, rule.side);
        for (let port = rule.from; port <= rule.to; port++) visit(base + port);
      }
    }
  }
}

function replaced<T>(list: readonly T[], index: number, value: T): T[] {
  const out = list.slice();
  out[index] = value;
  return out;
}
