/**
 * Every error portshaper raises, and every error code the API answers with.
 * Each code is stable (documented in docs/errors.md, checked by
 * test/unit/errors-doc.test.ts against this table) and says:
 * - class: the error class raised with it (null: only sent as an API reply);
 * - status: the HTTP status the API answers when it meets the error (5xx
 *   answers hide the details behind PS_INTERNAL, see src/api/app.ts);
 * - exit: the CLI's exit status when a command fails with it (1 invalid
 *   input, 2 the system cannot do it, 3 a bug);
 * - hint: the general fix, printed by the CLI when the raise site had no
 *   more specific one.
 * Raise sites name a code through CODE (CODE.PS_KERNEL), so an unknown code
 * does not compile and no 'PS_…' literal lives outside this file.
 */

interface ErrorSpec {
  readonly class: string | null;
  readonly status: number;
  readonly exit: 1 | 2 | 3;
  readonly hint: string;
}

export const ERRORS = {
  PS_POLICY_INVALID: { class: 'PolicyError', status: 400, exit: 1, hint: 'fix each line reported; check with "portshaper validate FILE" before reloading' },
  PS_UNIT_INVALID: { class: 'UnitError', status: 400, exit: 1, hint: 'write the value in tc(8) units: 10mbit, 1.5gbit, 300ms, 4mb' },
  PS_USAGE: { class: 'UsageError', status: 400, exit: 1, hint: 'run "portshaper <command> --help" for usage' },
  PS_PERMISSION: { class: 'PermissionError', status: 500, exit: 2, hint: 'run as root (sudo) or grant CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN' },
  PS_KERNEL_TOO_OLD: { class: 'PortshaperError', status: 500, exit: 2, hint: 'upgrade the kernel to 5.12 or newer' },
  PS_LIBBPF_NOT_FOUND: { class: 'LibraryNotFoundError', status: 500, exit: 2, hint: 'apt-get install libbpf1, or set PORTSHAPER_LIBBPF to the path of libbpf.so.1' },
  PS_LIBC_NOT_FOUND: { class: 'LibraryNotFoundError', status: 500, exit: 2, hint: 'set PORTSHAPER_LIBC to the path of the C library (glibc\'s libc.so.6)' },
  PS_BPF_OBJECT: { class: 'PortshaperError', status: 500, exit: 2, hint: 'build the object with "make", or reinstall with "make install"' },
  PS_BPF_OPEN: { class: 'KernelError', status: 500, exit: 2, hint: 'rebuild the object: make clean && make' },
  PS_BPF_LOAD: { class: 'KernelError', status: 500, exit: 2, hint: 'grant CAP_PERFMON, use a kernel with BTF (/sys/kernel/btf/vmlinux); otherwise report it with the verifier log' },
  PS_BPFFS: { class: 'KernelError', status: 500, exit: 2, hint: 'mount it once as root: mount -t bpf bpf /sys/fs/bpf' },
  PS_PIN_LAYOUT: { class: 'PinLayoutError', status: 500, exit: 2, hint: 'detach with the version that created the pins, or "portshaper detach --purge"' },
  PS_PIN_FOREIGN: { class: 'PortshaperError', status: 500, exit: 2, hint: 'give portshaper a pin directory of its own (pinDir in the policy)' },
  PS_CAPACITY: { class: 'CapacityError', status: 500, exit: 2, hint: 'use "buckets: shared" for port ranges, fewer rules or interfaces' },
  PS_NETNS: { class: 'PortshaperError', status: 500, exit: 2, hint: 'check the name with "ip netns list"; run as root' },
  PS_TC_ATTACH: { class: 'KernelError', status: 500, exit: 2, hint: 'load the tc modules: modprobe sch_ingress cls_bpf' },
  PS_TC_DETACH: { class: 'KernelError', status: 500, exit: 2, hint: 'check "tc filter show dev IFACE ingress" / egress; ours has pref 20563 handle 0x5053' },
  PS_TC_QUERY: { class: 'KernelError', status: 500, exit: 2, hint: 'check "tc filter show dev IFACE ingress" / egress' },
  PS_KERNEL: { class: 'KernelError', status: 500, exit: 2, hint: 'EPERM/EACCES: run as root; ENOMEM: raise the locked-memory limit (ulimit -l); otherwise report it with this message' },
  PS_TEST_RUN: { class: 'KernelError', status: 500, exit: 2, hint: 'run the kernel tests as root' },
  PS_PLAN_INCONSISTENT: { class: 'PortshaperError', status: 500, exit: 3, hint: 'rename one of the rules named in the message, and report it' },
  PS_INTERNAL: { class: 'PortshaperError', status: 500, exit: 3, hint: 'report it with the log' },
  PS_API_BIND: { class: 'ApiBindError', status: 500, exit: 2, hint: 'choose another api.listen, or run with --no-api' },
  PS_API_TOKEN: { class: 'ApiTokenError', status: 500, exit: 2, hint: 'point api.tokenFile at a path the agent can write' },
  PS_API_UNREACHABLE: { class: 'ApiUnreachable', status: 500, exit: 2, hint: 'start the agent, or point --api at it' },
  PS_UNAUTHORIZED: { class: null, status: 401, exit: 1, hint: 'send "Authorization: Bearer <token>" with the content of api.tokenFile' },
  PS_NOT_FOUND: { class: null, status: 404, exit: 1, hint: 'see GET /openapi.json for the routes' },
  PS_RULE_NOT_FOUND: { class: 'RuleNotFoundError', status: 404, exit: 1, hint: 'list the rules with GET /v1/rules or "portshaper status"' },
  PS_API_INVALID_REQUEST: { class: null, status: 400, exit: 1, hint: 'fix the fields named; GET /openapi.json has every schema' },
  PS_API_BODY_TOO_DEEP: { class: null, status: 400, exit: 1, hint: 'send a policy or rule body nested at most a few levels deep' },
  PS_POLICY_CHANGE_INVALID: { class: 'PolicyChangeError', status: 400, exit: 1, hint: 'fix the fields named, as the messages say' },
  PS_POLICY_CONFLICT: { class: 'PolicyChangeError', status: 409, exit: 1, hint: 'change the port, protocol, direction or side, or the other rule first' },
  PS_POLICY_FILE_INVALID: { class: 'PolicyFileInvalidError', status: 409, exit: 1, hint: 'fix the policy file ("portshaper validate FILE"), then retry' },
  PS_POLICY_READONLY: { class: 'PolicyReadOnlyError', status: 409, exit: 1, hint: 'change the policy where it is managed and reload the agent' },
  PS_API_BODY_TOO_LARGE: { class: null, status: 413, exit: 1, hint: 'send a smaller body; change many rules with PUT /v1/policy' },
  PS_API_UNSUPPORTED_MEDIA_TYPE: { class: null, status: 415, exit: 1, hint: 'set Content-Type: application/json (rules) or application/yaml (policy)' },
  PS_PERSIST_FAILED: { class: 'PersistError', status: 500, exit: 2, hint: 'make the policy\'s directory writable or free space, then retry' },
  PS_QDISC: { class: 'NetlinkError', status: 500, exit: 2, hint: 'modprobe sch_htb sch_fifo; compare with "tc -s qdisc show dev IFACE"' },
  PS_QDISC_FOREIGN: { class: 'ForeignQdiscError', status: 409, exit: 2, hint: 'set "qdisc: replace" for the interface in the policy, or remove the qdisc yourself' },
} as const satisfies Record<string, ErrorSpec>;

/** A code of the table; anything else does not compile. */
export type ErrorCode = keyof typeof ERRORS;

/** Every code by name, to write a code without a string literal: CODE.PS_KERNEL. */
export const CODE = Object.fromEntries(Object.keys(ERRORS).map((code) => [code, code])) as { readonly [C in ErrorCode]: C };


/** Base class: a stable code, a human message, and an optional fix hint. */
export class PortshaperError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options: { hint?: string; cause?: unknown } = {}) {
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
    code: ErrorCode,
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

/** Pinned maps were written by an incompatible build of portshaper. */
export class PinLayoutError extends PortshaperError {
  constructor(pinDir: string, found: string, expected: number) {
    super(
      CODE.PS_PIN_LAYOUT,
      `pinned maps in ${pinDir} have layout ${found}; this build uses layout ${expected}`,
      {
        hint: `run the portshaper version that created them to detach, or remove them with "portshaper detach --pin-dir ${pinDir} --purge" (counters and bucket credit are lost)`,
      },
    );
  }
}

/** The process lacks the privileges to load BPF programs or change tc. */
export class PermissionError extends PortshaperError {
  constructor(operation: string) {
    super(CODE.PS_PERMISSION, `${operation} needs root or CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN`, {
      hint: 'run as root (sudo) or grant the capabilities, e.g. in the systemd unit AmbientCapabilities=CAP_BPF CAP_PERFMON CAP_NET_ADMIN',
    });
  }
}

/** A value violates a data-plane limit (too many rules, rate out of range). */
export class CapacityError extends PortshaperError {
  constructor(message: string, hint: string) {
    super(CODE.PS_CAPACITY, message, { hint });
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
      CODE.PS_POLICY_INVALID,
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
    super(CODE.PS_RULE_NOT_FOUND, `no rule named "${name}"`, { hint: 'list the rules with GET /v1/rules or "portshaper status"' });
  }
}

/**
 * The policy file on disk was edited and does not validate, so an API change
 * cannot be applied on top of it (HTTP 409). The running policy stays in force.
 */
export class PolicyFileInvalidError extends PortshaperError {
  readonly diagnostics: Diagnostic[];

  constructor(file: string, diagnostics: Diagnostic[]) {
    super(CODE.PS_POLICY_FILE_INVALID, `the policy file ${file} was edited and has errors; API changes are written into it, so fix it first`, {
      hint: `run "portshaper validate ${file}"`,
    });
    this.diagnostics = diagnostics;
  }
}

/** An API change was applied but could not be written to the policy file; the kernel was rolled back (HTTP 500). */
export class PersistError extends PortshaperError {
  constructor(file: string, cause: unknown) {
    super(CODE.PS_PERSIST_FAILED, `could not write the policy file ${file}; the change was rolled back`, {
      hint: 'check that the directory is writable and the disk is not full',
      cause,
    });
  }
}

/** The REST API could not listen on its address. */
export class ApiBindError extends PortshaperError {
  constructor(message: string, hint: string, cause?: unknown) {
    super(CODE.PS_API_BIND, message, { hint, cause });
  }
}

/** The REST API's token file cannot be read or created. */
export class ApiTokenError extends PortshaperError {
  constructor(file: string, reason: string) {
    super(CODE.PS_API_TOKEN, `cannot use the API token file ${file}: ${reason}`, {
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
      conflict ? CODE.PS_POLICY_CONFLICT : CODE.PS_POLICY_CHANGE_INVALID,
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

  constructor(code: ErrorCode, operation: string, errno: number, errnoName: string, extAck: string, hint?: string) {
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
    super(CODE.PS_QDISC_FOREIGN, `${ifname} has a root qdisc portshaper did not install (${kind} ${handle}); shaping needs portshaper's HTB root there`, {
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
    super(CODE.PS_POLICY_READONLY, `the policy file ${file} is managed elsewhere: ${reason}; API writes are refused and nothing was applied`, {
      hint: configMap
        ? 'change the policy in the ConfigMap (with the shipped manifests: kubectl -n portshaper edit configmap portshaper-policy); kubelet updates the file within its sync period and the agent applies it'
        : `change ${file} where it is managed and reload the agent (SIGHUP), or give it a writable policy file`,
    });
  }
}

/** One place a shared library was looked for, and why it did not load. */
export interface LibraryAttempt {
  path: string;
  reason: string;
}

/**
 * A shared library (libbpf, libc) could not be loaded. The message lists
 * every path tried and the loader's reason for each, so a wrong path or a
 * wrong architecture is visible without strace.
 */
export class LibraryNotFoundError extends PortshaperError {
  readonly tried: LibraryAttempt[];

  constructor(code: ErrorCode, library: string, tried: LibraryAttempt[], hint: string) {
    super(code, `could not load ${library}; tried:\n${tried.map((t) => `    ${t.path}: ${t.reason}`).join('\n')}`, { hint });
    this.tried = tried;
  }
}

/** A rate, size or duration that cannot be read or is out of range; the message says how to write it. */
export class UnitError extends PortshaperError {
  constructor(message: string) {
    super(CODE.PS_UNIT_INVALID, message);
  }
}

/** Bad command-line usage: exit code 1 with the message (which points at the command's --help). */
export class UsageError extends PortshaperError {
  constructor(message: string) {
    super(CODE.PS_USAGE, message);
  }
}

/** The agent's API did not answer the CLI. */
export class ApiUnreachable extends PortshaperError {
  constructor(url: string, reason: string, hint = 'is the agent running? check --api or api.listen in the policy') {
    super(CODE.PS_API_UNREACHABLE, `cannot reach the agent's API at ${url} (${reason}); ${hint}`);
  }
}
