/** A stand-in for the Agent the API service drives: real validation and planning, apply recorded instead of written to a kernel. */
import { readFileSync } from 'node:fs';
import { agentState, hashText } from '../../../src/controller/agent.js';
import { PolicyError } from '../../../src/errors.js';
import { parsePolicy, planPolicy, validateOne, validatePolicy, type ValidPolicy } from '../../../src/policy/index.js';

/** The parts of Agent the service uses, with apply recorded instead of written to a kernel. */
export function standIn(policyPath: string) {
  const applied: { rules: string[]; reason: string }[] = [];
  let queue: Promise<unknown> = Promise.resolve();
  const validateText = (text: string) => {
    const { policy, diagnostics } = validatePolicy(parsePolicy(text, policyPath), { interfaceExists: () => true });
    if (!policy) throw new PolicyError(diagnostics);
    return { policy, warnings: diagnostics };
  };
  const text = readFileSync(policyPath, 'utf8');
  const initial = validateText(text).policy;
  const agent = {
    policyPath,
    state: agentState(initial, planPolicy(initial), new Map<string, number>(), hashText(text)),
    dataPlane: { cpus: 1, maps: { ps_counters: { get: () => undefined, readAll: () => ({ values: Buffer.alloc(0), count: 0 }), stride: 8 } } },
    interfaces: () => [],
    validateText,
    validateRule: (text: string) => validateOne(text, policyPath, { interfaceExists: () => true })?.rule,
    applyPolicy(policy: ValidPolicy, hash: string | (() => string), reason: string) {
      applied.push({ rules: policy.rules.map((r) => `${r.name}=${r.rateBps}`), reason });
      agent.state = agentState(policy, planPolicy(policy), new Map(), typeof hash === 'string' ? hash : hash());
      return { buckets: 0, ruleWrites: 0, portWrites: 0, released: 0, ms: 0 };
    },
    serialize<T>(fn: () => Promise<T>): Promise<T> {
      const next = queue.then(fn, fn);
      queue = next.catch(() => undefined);
      return next;
    },
  };
  return { agent, applied };
}
