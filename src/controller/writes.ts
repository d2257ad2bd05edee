/**
 * The write transaction of API changes, all-or-nothing, through
 * agent.serialize() (concurrent ones in one batch): edit the file's text
 * (yaml Document API) → validate it exactly as the file is validated → apply
 * it to the kernel (in force before the caller answers) → write the file
 * atomically. If the file cannot be written the previous policy is applied
 * again. The watcher's reload then finds the file's hash already in force
 * and does nothing.
 */
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import {
  PersistError,
  PolicyChangeError,
  PolicyError,
  PolicyFileInvalidError,
  PolicyReadOnlyError,
  PortshaperError,
  RuleNotFoundError,
  type Diagnostic,
  type FieldProblem,
} from '../errors.js';
import type { ApiSettings, ValidPolicy } from '../policy/index.js';
import { hashText, type Agent, type ApplyResult } from './agent.js';
import { deleteRuleText, patchRuleText, putRuleText, writeFileAtomic, type RuleFields } from './persist.js';
import { isKubeletManaged, readOnlyReason } from './source.js';

/** A write's change to the policy text; `index` is the rule it edits, for field names in errors. */
export type Edit = (base: { text: string; policy: ValidPolicy }) => { text: string; index?: number };

/** What the batch an accepted write joined did. */
export interface WriteOutcome {
  /** Rules in the policy now in force. */
  rules: number;
  /** Time the kernel apply took. */
  ms: number;
  /** Warnings of the policy now in force. */
  warnings: Diagnostic[];
}

/** A write waiting for its batch. */
interface PendingWrite {
  reason: string;
  requestId: string;
  edit: Edit;
  resolve(outcome: WriteOutcome): void;
  reject(err: unknown): void;
}

/** Writes to the running policy: one rule by name, or the whole text. */
export class PolicyWriter {
  private pending: PendingWrite[] = [];
  /** API settings the agent started with (a change in the file takes effect at the next start). */
  private readonly settings: ApiSettings;

  constructor(
    private readonly agent: Agent,
    private readonly log: Logger,
  ) {
    this.settings = agent.state.policy.api;
  }

  /** Create or replace a rule; resolves once in force and persisted, created: it is new. */
  async putRule(name: string, fields: RuleFields, requestId: string): Promise<{ created: boolean }> {
    let created = false;
    await this.write(`PUT rule ${name}`, requestId, ({ text, policy }) => {
      const index = indexOf(policy, name);
      created = index === undefined;
      return { text: putRuleText(text, index, name, fields), index: index ?? policy.rules.length };
    });
    return { created };
  }

  /** Change some keys of a rule (null removes one). Throws RuleNotFoundError. */
  async patchRule(name: string, patch: RuleFields, requestId: string): Promise<void> {
    await this.write(`PATCH rule ${name}`, requestId, ({ text, policy }) => {
      const index = indexOf(policy, name);
      if (index === undefined) throw new RuleNotFoundError(name);
      return { text: patchRuleText(text, index, name, patch), index };
    });
  }

  /** Remove a rule. Throws RuleNotFoundError. */
  async deleteRule(name: string, requestId: string): Promise<void> {
    await this.write(`DELETE rule ${name}`, requestId, ({ text, policy }) => {
      const index = indexOf(policy, name);
      if (index === undefined) throw new RuleNotFoundError(name);
      return { text: deleteRuleText(text, index) };
    });
  }

  /** Replace the whole policy with YAML text (validated exactly as the file is). */
  replacePolicy(text: string, requestId: string): Promise<WriteOutcome> {
    return this.write('PUT policy', requestId, () => ({ text }));
  }

  /**
   * Queue one write. Writes that arrive while another is being applied are
   * applied together (group commit): each edit is validated on top of the
   * previous ones and refused alone if it fails; the accepted ones go to the
   * kernel in one apply and to the file in one write, and are answered
   * together. A burst of concurrent writes thus costs a few applies, not one each.
   */
  write(reason: string, requestId: string, edit: Edit): Promise<WriteOutcome> {
    // A file the agent cannot write back is refused before anything is applied (a ConfigMap mount).
    const path = this.agent.policyPath;
    const readOnly = readOnlyReason(path);
    if (readOnly) return Promise.reject(new PolicyReadOnlyError(path, readOnly, isKubeletManaged(path)));
    return new Promise<WriteOutcome>((resolve, reject) => {
      this.pending.push({ reason, requestId, edit, resolve, reject });
      // The first write of a batch schedules its flush; later ones join until it starts. setImmediate
      // runs after the event loop has read every request that has arrived, so they all join.
      if (this.pending.length === 1) setImmediate(() => void this.agent.serialize(async () => this.flush()));
    });
  }

  private flush(): void {
    const batch = this.pending;
    this.pending = [];
    const path = this.agent.policyPath;
    let base: { text: string; policy: ValidPolicy };
    try {
      base = this.base();
    } catch (err) {
      for (const w of batch) w.reject(err);
      return;
    }
    let { text, policy } = base;
    let warnings: Diagnostic[] = [];
    const accepted: PendingWrite[] = [];
    for (const w of batch) {
      try {
        const next = w.edit({ text, policy });
        try {
          ({ policy, warnings } = this.agent.validateText(next.text));
        } catch (err) {
          throw err instanceof PolicyError ? changeError(err.diagnostics, next.index) : err;
        }
        text = next.text;
        accepted.push(w);
      } catch (err) {
        w.reject(err);
      }
    }
    if (!accepted.length) return;
    const requests = accepted.map((w) => w.requestId);
    const why = `API ${accepted.map((w) => w.reason).join(', ')}`;
    const previous = this.agent.state;
    let result: ApplyResult;
    try {
      result = this.agent.applyPolicy(policy, hashText(text), why);
      writeFileAtomic(path, text);
    } catch (err) {
      this.log.error({ requests, file: path, err: String(err) }, 'API change failed; rolling the kernel back to the previous policy');
      let failure = err;
      try {
        this.agent.applyPolicy(previous.policy, previous.hash, `rollback of requests ${requests.join(', ')}`);
        if (!(err instanceof PortshaperError)) failure = new PersistError(path, err);
      } catch (rollback) {
        this.log.error({ requests, err: String(rollback) }, 'rollback failed; the kernel may hold part of the change until the next reload');
      }
      for (const w of accepted) w.reject(failure);
      return;
    }
    if (JSON.stringify(policy.api) !== JSON.stringify(this.settings)) {
      this.log.warn({ running: this.settings, file: policy.api }, 'api settings change at the next agent start');
    }
    const outcome: WriteOutcome = { rules: policy.rules.length, ms: result.ms, warnings };
    for (const w of accepted) w.resolve(outcome);
  }

  /** The file to edit: the one in force, or an edited file that validates (its edits then go in with the change). */
  private base(): { text: string; policy: ValidPolicy } {
    const path = this.agent.policyPath;
    const text = readFileSync(path, 'utf8');
    const state = this.agent.state;
    if (hashText(text) === state.hash) return { text, policy: state.policy };
    try {
      return { text, policy: this.agent.validateText(text).policy };
    } catch (err) {
      if (err instanceof PolicyError) throw new PolicyFileInvalidError(path, err.diagnostics);
      throw err;
    }
  }
}

function indexOf(policy: ValidPolicy, name: string): number | undefined {
  const i = policy.rules.findIndex((r) => r.name === name);
  return i < 0 ? undefined : i;
}

/**
 * The validator's diagnostics as field problems: each message starts with the
 * policy path it concerns ("rules[3].rate: ..."); for the edited rule the
 * path becomes the body key ("rate"). An overlap makes the change a conflict.
 */
export function changeError(diagnostics: Diagnostic[], ruleIndex?: number): PolicyChangeError {
  const problems: FieldProblem[] = [];
  let conflict = false;
  for (const d of diagnostics) {
    if (d.severity !== 'error') continue;
    const m = /^([A-Za-z0-9_.[\]]+): ([\s\S]*)$/.exec(d.message);
    let field = m?.[1] ?? 'policy';
    const reason = m?.[2] ?? d.message;
    if (ruleIndex !== undefined) {
      const own = `rules[${ruleIndex}]`;
      if (field === own) field = 'rule';
      else if (field.startsWith(`${own}.`)) field = field.slice(own.length + 1);
    }
    // Cross-rule overlap, as validatePolicy words it (src/policy/validate.ts checkAcrossRules).
    if (reason.startsWith('overlaps rule "')) conflict = true;
    problems.push({ field, reason });
  }
  return new PolicyChangeError(problems, conflict);
}
