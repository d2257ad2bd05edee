/**
 * Every error portshaper raises. Each has a stable `code` (documented in
 * docs/errors.md and checked by a test) and a message that says what to do.
 */

/** Base class: a stable code, a human message, and an optional fix hint. */
export class PortshaperError extends Error {
  readonly code: string;
  readonly hint: string | undefined;

  constructor(code: string, message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(options.hint ? `${message}\n  fix: ${options.hint}` : message, { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.hint = options.hint;
  }
}

/** A libbpf or kernel call failed. Carries the operation, errno and libbpf's log. */
export class KernelError extends PortshaperError {
  readonly operation: string;
  readonly errno: number;
  readonly errnoName: string;
  readonly libbpfLog: string;

  constructor(
    code: string,
    operation: string,
    errno: number,
    errnoName: string,
    libbpfLog: string,
    hint?: string,
  ) {
    const log = libbpfLog.trim() ? `\n--- libbpf log ---\n${tail(libbpfLog.trim(), 60)}` : '';
    super(code, `${operation} failed: ${errnoName} (errno ${errno})${log}`, hint ? { hint } : {});
    this.operation = operation;
    this.errno = errno;
    this.errnoName = errnoName;
    this.libbpfLog = libbpfLog;
  }
}

/** The libbpf shared library could not be loaded. */
export class LibraryNotFoundError extends PortshaperError {
  constructor(tried: string[], cause: unknown) {
    super('PS_LIBBPF_NOT_FOUND', `could not load libbpf; tried: ${tried.join(', ')}`, {
      hint: 'install libbpf1 (Debian: apt-get install libbpf1) or set PORTSHAPER_LIBBPF to the path of libbpf.so.1',
      cause,
    });
  }
}

/** Pinned maps were written by an incompatible build of portshaper. */
export class PinLayoutError extends PortshaperError {
  constructor(pinDir: string, found: string, expected: number) {
    super(
      'PS_PIN_LAYOUT',
      `pinned maps in ${pinDir} have layout ${found}; this build uses layout ${expected}`,
      {
        hint: `run the portshaper version that created them to detach, or remove them with "portshaper detach --pin-dir ${pinDir} --purge" (counters and bucket credit are lost)`,
      },
    );
  }
}

/** A network interface named in the configuration does not exist. */
export class InterfaceNotFoundError extends PortshaperError {
  constructor(name: string) {
    super('PS_IFACE_NOT_FOUND', `interface "${name}" does not exist in this network namespace`, {
      hint: 'check the name with "ip -br link"; in a container, run the agent in the namespace that owns the interface',
    });
  }
}

/** The process lacks the privileges to load BPF programs or change tc. */
export class PermissionError extends PortshaperError {
  constructor(operation: string) {
    super('PS_PERMISSION', `${operation} needs root or CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN`, {
      hint: 'run as root (sudo) or grant the capabilities, e.g. in the systemd unit AmbientCapabilities=CAP_BPF CAP_PERFMON CAP_NET_ADMIN',
    });
  }
}

/** A value violates a data-plane limit (too many rules, rate out of range). */
export class CapacityError extends PortshaperError {
  constructor(message: string, hint: string) {
    super('PS_CAPACITY', message, { hint });
  }
}

/** One positioned problem in a policy file. */
export interface Diagnostic {
  file: string;
  line: number;
  column: number;
  message: string;
  severity: 'error' | 'warning';
  /** What kind of problem: stable, for programs (the API answers 409 for 'overlap', 400 for the rest). */
  code: DiagnosticCode;
  /** The policy path it concerns ("rules[3].rate"; "" is the whole policy), when it concerns one. */
  path?: string;
}

/**
 * Kinds of policy diagnostics. yaml: syntax; file: unreadable; unknown-key,
 * missing-key, type, range, enum, pattern, units: one value against the key
 * table; duplicate: a name or interface listed twice; reference: names
 * something that is not there; overlap: two rules claim a port; capacity:
 * beyond what the data plane holds; conflict: keys that contradict each
 * other; notice: a warning about a valid policy.
 */
export type DiagnosticCode =
  | 'yaml'
  | 'file'
  | 'unknown-key'
  | 'missing-key'
  | 'type'
  | 'range'
  | 'enum'
  | 'pattern'
  | 'units'
  | 'duplicate'
  | 'reference'
  | 'overlap'
  | 'capacity'
  | 'conflict'
  | 'notice';

/** Format a diagnostic as `file:line:column: message` (the form editors and CI understand). */
export function formatDiagnostic(d: Diagnostic): string {
  const prefix = d.severity === 'warning' ? 'warning: ' : '';
  return `${d.file}:${d.line}:${d.column}: ${prefix}${d.message}`;
}

/** A policy failed validation; carries every problem found, not just the first. */
export class PolicyError extends PortshaperError {
  readonly diagnostics: Diagnostic[];

  constructor(diagnostics: Diagnostic[]) {
    const errors = diagnostics.filter((d) => d.severity === 'error');
    super(
      'PS_POLICY_INVALID',
      `policy has ${errors.length} error${errors.length === 1 ? '' : 's'}:\n` +
        diagnostics.map(formatDiagnostic).join('\n'),
    );
    this.diagnostics = diagnostics;
  }
}

function tail(text: string, lines: number): string {
  const all = text.split('\n');
  return all.length <= lines ? text : ['…', ...all.slice(-lines)].join('\n');
}

/** The REST API was asked about a rule the policy does not have (HTTP 404). */
export class RuleNotFoundError extends PortshaperError {
  constructor(name: string) {
    super('PS_RULE_NOT_FOUND', `no rule named "${name}"`, { hint: 'list the rules with GET /v1/rules or "portshaper status"' });
  }
}

/**
 * The policy file on disk was edited and does not validate, so an API change
 * cannot be applied on top of it (HTTP 409). The running policy stays in force.
 */
export class PolicyFileInvalidError extends PortshaperError {
  readonly diagnostics: Diagnostic[];

  constructor(file: string, diagnostics: Diagnostic[]) {
    super('PS_POLICY_FILE_INVALID', `the policy file ${file} was edited and has errors; API changes are written into it, so fix it first`, {
      hint: `run "portshaper validate ${file}"`,
    });
    this.diagnostics = diagnostics;
  }
}

/** An API change was applied but could not be written to the policy file; the kernel was rolled back (HTTP 500). */
export class PersistError extends PortshaperError {
  constructor(file: string, cause: unknown) {
    super('PS_PERSIST_FAILED', `could not write the policy file ${file}; the change was rolled back`, {
      hint: 'check that the directory is writable and the disk is not full',
      cause,
    });
  }
}

/** The REST API could not listen on its address. */
export class ApiBindError extends PortshaperError {
  constructor(message: string, hint: string, cause?: unknown) {
    super('PS_API_BIND', message, { hint, cause });
  }
}

/** The REST API's token file cannot be read or created. */
export class ApiTokenError extends PortshaperError {
  constructor(file: string, reason: string) {
    super('PS_API_TOKEN', `cannot use the API token file ${file}: ${reason}`, {
      hint: 'set api.tokenFile to a path the agent can read (it creates the file, mode 0600, when missing)',
    });
  }
}

/** One problem with a requested change: the field it concerns and why. */
export interface FieldProblem {
  field: string;
  reason: string;
}

/**
 * A change made through the API would make the policy invalid (HTTP 400), or
 * would make two rules claim the same port (HTTP 409). Nothing was applied.
 */
export class PolicyChangeError extends PortshaperError {
  readonly problems: FieldProblem[];
  readonly conflict: boolean;

  constructor(problems: FieldProblem[], conflict: boolean) {
    super(
      conflict ? 'PS_POLICY_CONFLICT' : 'PS_POLICY_CHANGE_INVALID',
      conflict
        ? 'the change would make two rules claim the same port; nothing was applied'
        : `the change makes the policy invalid (${problems.length} problem${problems.length === 1 ? '' : 's'}); nothing was applied`,
    );
    this.problems = problems;
    this.conflict = conflict;
  }
}

/**
 * The kernel refused an rtnetlink request (a qdisc or class change). Its own
 * explanation, the extended ack, continues the first line of the message.
 */
export class NetlinkError extends KernelError {
  readonly extAck: string;

  constructor(code: string, operation: string, errno: number, errnoName: string, extAck: string, hint?: string) {
    super(code, operation, errno, errnoName, '', hint);
    this.extAck = extAck;
    if (extAck) {
      const firstLine = this.message.split('\n', 1)[0]!;
      this.message = `${firstLine}: ${extAck}${this.message.slice(firstLine.length)}`;
    }
  }
}

/** A device has a root qdisc portshaper did not install; it is replaced only when the policy allows it. */
export class ForeignQdiscError extends PortshaperError {
  constructor(
    readonly ifname: string,
    readonly kind: string,
    readonly handle: string,
  ) {
    super('PS_QDISC_FOREIGN', `${ifname} has a root qdisc portshaper did not install (${kind} ${handle}); shaping needs portshaper's HTB root there`, {
      hint: `allow replacing it with "qdisc: replace" for ${ifname} under interfaces in the policy (detaching then leaves the kernel's default qdisc, not this one), or remove it yourself: tc qdisc del dev ${ifname} root`,
    });
  }
}

/**
 * An API write was refused because the agent cannot write the policy file
 * back: it is managed elsewhere (a Kubernetes ConfigMap, a read-only mount).
 * Checked before anything is applied, so the kernel is untouched (HTTP 409).
 */
export class PolicyReadOnlyError extends PortshaperError {
  constructor(file: string, reason: string, configMap: boolean) {
    super('PS_POLICY_READONLY', `the policy file ${file} is managed elsewhere: ${reason}; API writes are refused and nothing was applied`, {
      hint: configMap
        ? 'change the policy in the ConfigMap (with the shipped manifests: kubectl -n portshaper edit configmap portshaper-policy); kubelet updates the file within its sync period and the agent applies it'
        : `change ${file} where it is managed and reload the agent (SIGHUP), or give it a writable policy file`,
    });
  }
}
