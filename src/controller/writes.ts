/**
 * The write transaction of API changes, all-or-nothing, through
 * agent.serialize() (concurrent ones in one batch): edit the file's text
 * (yaml Document API) → validate it exactly as the file is validated → apply
 * it to the kernel (in force before the caller answers) → write the file
 * atomically. If the file cannot be written the previous policy is applied
 * again. The watcher's reload then finds the file's hash already in force
 * and does nothing.
 */
import { readFileSync, statSync } from 'node:fs';
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
import { RuleIndex, type ApiSettings, type PolicyRule, type ValidPolicy } from '../policy/index.js';
import { hashText, type Agent, type ApplyResult, type RuleChange } from './agent.js';
import { deleteRuleText, patchRuleText, putRuleText, RuleTexts, writeFileAtomic, type RuleFields } from './persist.js';
import { isKubeletManaged, readOnlyReason } from './source.js';

/** The policy a write edits: its text, the policy it validates to, and where its rules' lines are (when known). */
export interface EditBase {
  /** The file's text (for a splice, decoded only if an edit asks: 5 MiB of text is not free to build). */
  text(): string;
  policy: ValidPolicy;
  warnings: Diagnostic[];
  /** undefined: the rules are not a plain block list (edits go through the whole document). */
  rules?: RuleTexts;
}

/**
 * A write's change to the policy text; `index` is the rule it edits, for
 * field names in errors. `spliced`: the edit replaced only rule `index`'s
 * lines with `item` (undefined: removed it; index = count: appended), so it
 * can be validated at the cost of that rule.
 */
export type Edit = (base: EditBase) => { text: string; index?: number } | { index?: number; spliced: { index: number; item?: string; rules: RuleTexts } };

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
  /** The file as this writer last wrote it (rules: null when they are not a block list). */
  private file: { path: string; text: () => string; hash: string; id: string; rules?: RuleTexts | null } | undefined;
  /** Port owners and totals of the policy a splice is checked against (rebuilt when that policy is not the base). */
  private index: RuleIndex | undefined;
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
    await this.write(`PUT rule ${name}`, requestId, ({ text, policy, rules }) => {
      const index = indexOf(policy, name);
      created = index === undefined;
      const at = index ?? policy.rules.length;
      if (rules) {
        const item = rules.edited(index, (mini, i) => putRuleText(mini, i, name, fields));
        const next = rules.with(at, item);
        return { index: at, spliced: { index: at, item, rules: next } };
      }
      return { text: putRuleText(text(), index, name, fields), index: at };
    });
    return { created };
  }

  /** Change some keys of a rule (null removes one). Throws RuleNotFoundError. */
  async patchRule(name: string, patch: RuleFields, requestId: string): Promise<void> {
    await this.write(`PATCH rule ${name}`, requestId, ({ text, policy, rules }) => {
      const index = indexOf(policy, name);
      if (index === undefined) throw new RuleNotFoundError(name);
      if (rules) {
        const item = rules.edited(index, (mini, i) => patchRuleText(mini, i!, name, patch));
        const next = rules.with(index, item);
        return { index, spliced: { index, item, rules: next } };
      }
      return { text: patchRuleText(text(), index, name, patch), index };
    });
  }

  /** Remove a rule. Throws RuleNotFoundError. */
  async deleteRule(name: string, requestId: string): Promise<void> {
    await this.write(`DELETE rule ${name}`, requestId, ({ text, policy, rules }) => {
      const index = indexOf(policy, name);
      if (index === undefined) throw new RuleNotFoundError(name);
      if (rules && rules.count > 1) {
        const next = rules.with(index, undefined);
        return { spliced: { index, rules: next } };
      }
      return { text: deleteRuleText(text(), index) };
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
    let base: EditBase;
    try {
      base = this.base();
    } catch (err) {
      for (const w of batch) w.reject(err);
      return;
    }
    let current = base;
    const accepted: PendingWrite[] = [];
    const changes: (RuleChange | undefined)[] = [];
    for (const w of batch) {
      try {
        const next = w.edit(current);
        let change: RuleChange | undefined;
        const spliced = 'spliced' in next ? next.spliced : undefined;
        const text = 'spliced' in next ? () => next.spliced.rules.text : () => next.text;
        let validated = spliced ? this.validateSplice(current, spliced) : undefined;
        if (validated) change = validated.change;
        else {
          try {
            const full = this.agent.validateText(text());
            validated = { policy: full.policy, warnings: full.warnings };
          } catch (err) {
            throw err instanceof PolicyError ? changeError(err.diagnostics, next.index) : err;
          }
        }
        current = { text, policy: validated.policy, warnings: validated.warnings, ...(spliced ? { rules: spliced.rules } : {}) };
        accepted.push(w);
        changes.push(change);
      } catch (err) {
        w.reject(err);
      }
    }
    if (!accepted.length) return;
    const requests = accepted.map((w) => w.requestId);
    const why = `API ${accepted.map((w) => w.reason).join(', ')}`;
    const previous = this.agent.state;
    const { policy, warnings } = current;
    // A splice is hashed and written from its bytes; whole-document edits from their text.
    const data = current.rules?.bytes ?? current.text();
    let result: ApplyResult;
    try {
      // A batch of one limit change is planned at the cost of that rule; anything else in full.
      const change = changes.length === 1 ? changes[0] : undefined;
      let hash = '';
      result = this.agent.applyPolicy(policy, () => (hash = hashText(data)), why, { warnings, ...(change ? { change } : {}) });
      writeFileAtomic(path, data);
      this.file = { path, text: current.text, hash, id: fileId(path), ...(current.rules ? { rules: current.rules } : {}) };
    } catch (err) {
      this.file = undefined;
      this.index = undefined;
      this.log.error({ requests, file: path, err: String(err) }, 'API change failed; rolling the kernel back to the previous policy');
      let failure = err;
      try {
        this.agent.applyPolicy(previous.policy, previous.hash, `rollback of requests ${requests.join(', ')}`, { warnings: previous.warnings });
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

  /**
   * A one-rule splice validated at the cost of that rule: the rule alone
   * against the file's other sections, then names, ports and capacity against
   * the index of the rules in force. undefined when that cannot decide (a
   * problem or warning anywhere, scoped rules): the caller validates in full.
   */
  private validateSplice(base: EditBase, spliced: { index: number; item?: string; rules: RuleTexts }): { policy: ValidPolicy; warnings: Diagnostic[]; change?: RuleChange } | undefined {
    if (base.warnings.length || !base.rules || base.rules.count !== base.policy.rules.length) return undefined;
    if (this.index?.policy !== base.policy) this.index = RuleIndex.of(base.policy);
    const index = this.index;
    if (!index) return undefined;
    let after: PolicyRule | undefined;
    if (spliced.item !== undefined) {
      const alone = this.agent.validateRule(spliced.rules.alone(spliced.item));
      if (!alone) return undefined;
      after = { ...alone, line: spliced.rules.lineOf(spliced.index) };
    }
    const before = base.policy.rules[spliced.index];
    const policy = index.change(spliced.index, after);
    if (!policy) return undefined;
    return { policy, warnings: [], ...(before && after ? { change: { before, after } } : {}) };
  }

  /**
   * The file to edit: the one in force, or an edited file that validates (its
   * edits then go in with the change). The text this writer last wrote is
   * kept: while the file is the one it wrote (same inode, size and change
   * time), a write neither reads nor hashes nor parses it again.
   */
  private base(): EditBase {
    const path = this.agent.policyPath;
    const state = this.agent.state;
    const known = this.file;
    if (known && known.path === path && known.hash === state.hash && known.id === fileId(path)) {
      if (known.rules === undefined) known.rules = RuleTexts.of(known.text()) ?? null;
      return { text: known.text, policy: state.policy, warnings: state.warnings, ...(known.rules ? { rules: known.rules } : {}) };
    }
    const id = fileId(path);
    const text = readFileSync(path, 'utf8');
    const hash = hashText(text);
    if (hash === state.hash) {
      const rules = RuleTexts.of(text);
      this.file = { path, text: () => text, hash, id, rules: rules ?? null };
      return { text: () => text, policy: state.policy, warnings: state.warnings, ...(rules ? { rules } : {}) };
    }
    try {
      const { policy, warnings } = this.agent.validateText(text);
      const rules = RuleTexts.of(text);
      return { text: () => text, policy, warnings, ...(rules ? { rules } : {}) };
    } catch (err) {
      if (err instanceof PolicyError) throw new PolicyFileInvalidError(path, err.diagnostics);
      throw err;
    }
  }
}

/** What identifies one version of a file without reading it (a rename over it changes the inode). */
function fileId(path: string): string {
  const st = statSync(path, { bigint: true });
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

function indexOf(policy: ValidPolicy, name: string): number | undefined {
  const i = policy.rules.findIndex((r) => r.name === name);
  return i < 0 ? undefined : i;
}

/**
 * The validator's diagnostics as field problems: the field is the
 * diagnostic's policy path ("rules[3].rate"), which for the edited rule
 * becomes the body key ("rate"); the reason is the message without its
 * leading location label. An overlap makes the change a conflict (409).
 */
export function changeError(diagnostics: Diagnostic[], ruleIndex?: number): PolicyChangeError {
  const problems: FieldProblem[] = [];
  let conflict = false;
  for (const d of diagnostics) {
    if (d.severity !== 'error') continue;
    let field = d.path || 'policy';
    if (ruleIndex !== undefined) {
      const own = `rules[${ruleIndex}]`;
      if (field === own) field = 'rule';
      else if (field.startsWith(`${own}.`)) field = field.slice(own.length + 1);
    }
    if (d.code === 'overlap') conflict = true;
    problems.push({ field, reason: withoutLabel(d.message) });
  }
  return new PolicyChangeError(problems, conflict);
}

/** "rules[3].rate: expected …" → "expected …": every validator message starts with the location it is about. */
function withoutLabel(message: string): string {
  const cut = message.indexOf(': ');
  return cut > 0 && !message.slice(0, cut).includes(' ') ? message.slice(cut + 2) : message;
}
