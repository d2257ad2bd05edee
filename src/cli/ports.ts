/** `portshaper ports`: every listening port, who owns it, what it carries and what limits it (GET /v1/ports). */
import type { PortEntry, PortsView, PortTraffic } from '../api/ports-schemas.js';
import { formatRate } from '../policy/index.js';
import { parseCommand } from './args.js';
import { ApiClient, CLIENT_HELP, CLIENT_OPTIONS, reportApiError } from './client.js';

export const PORTS_HELP = `Usage: portshaper ports [options]

Every listening TCP and UDP socket of the agent's network namespace (IPv4
and IPv6): address (* = every address, lo = loopback only), owning process,
pid and container; the rule limiting each direction, the rate measured over
the last seconds and drops. Ports that carry traffic without a listener
(side: remote rules; unmatched traffic where interfaces[].countUnmatched is
on) are listed too. Flags worth a glance follow the table:
  wildcard-unlimited        listens on every address and nothing limits it
  no-listener               a rule names a port nothing listens on (typo?)
  privileged-port-non-root  a port below 1024 held by a non-root user

Options:
  --all                  also list ports that look like the local end of
                         outbound connections (no listener, ephemeral range)
${CLIENT_HELP}

Exit status: 0 success; 1 the API refused the request; 2 the agent cannot
be reached or failed.
`;

/** Run the ports command; returns the exit code. */
export async function runPorts(argv: string[]): Promise<number> {
  const { values } = parseCommand('ports', argv, { ...CLIENT_OPTIONS, all: { type: 'boolean' } });
  if (values.help) {
    process.stdout.write(PORTS_HELP);
    return 0;
  }
  const res = await ApiClient.fromOptions(values).request<PortsView>('GET', `/v1/ports${values.all ? '?all=true' : ''}`);
  if (res.status !== 200) return reportApiError(res, values.json ?? false);
  process.stdout.write(values.json ? `${JSON.stringify(res.body, null, 2)}\n` : portsTable(res.body));
  return 0;
}

/** A bit rate the way status prints it: tc notation, bits below 1 kbit. */
export function formatBits(bps: number): string {
  return bps < 1000 ? `${Math.round(bps)}bit` : formatRate(Math.round(bps));
}

/** "8080", "30000-30999", or "r:443" for a remote-side port. */
export function portLabel(e: PortEntry): string {
  return `${e.side === 'remote' ? 'r:' : ''}${e.range ?? e.port}`;
}

/** Where an entry listens: * (every address), lo, or the addresses; - when nothing listens. */
export function listenLabel(e: PortEntry): string {
  if (!e.listeners.length) return '-';
  const scopes = [...new Set(e.listeners.map((l) => (l.scope === 'wildcard' ? '*' : l.scope === 'loopback' ? 'lo' : l.address)))];
  return scopes.join(',');
}

/** Owning processes: command[pid], and the container when there is one. */
export function processLabel(e: PortEntry): string {
  const seen = new Set<string>();
  for (const l of e.listeners) {
    const p = l.process;
    seen.add(p ? `${p.command}[${p.pid}]${p.container ? ` ${p.container}` : ''}` : `uid ${l.uid}`);
  }
  return [...seen].join(',') || '-';
}

/** The configured limit of one direction: the rule's rate, "count" for an unlimited rule, - for none. */
export function limitLabel(t: PortTraffic): string {
  if (!t.rules.length) return '-';
  return t.rules.map((r) => (r.rateBitsPerSecond > 0 ? r.rate : 'count')).join(',');
}

/** The measured rate of one direction; - when nothing measures it. */
export function rateLabel(t: PortTraffic): string {
  return t.source === 'none' ? '-' : formatBits(t.bitsPerSecond);
}

/** The ports table and the flags under it. */
export function portsTable(view: PortsView): string {
  const rows = [['PORT', 'PROTO', 'LISTEN', 'PROCESS', 'IN LIMIT', 'IN RATE', 'OUT LIMIT', 'OUT RATE', 'DROPS']];
  for (const e of view.ports) {
    rows.push([
      portLabel(e),
      e.protocol,
      listenLabel(e),
      processLabel(e),
      limitLabel(e.ingress),
      rateLabel(e.ingress),
      limitLabel(e.egress),
      rateLabel(e.egress),
      String(e.ingress.droppedPackets + e.egress.droppedPackets),
    ]);
  }
  if (rows.length === 1) return 'no listening ports and no rules\n';
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  const lines = rows.map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd());
  const flags = view.ports.flatMap((e) => e.flags.map((f) => `! ${f.code}: ${f.message}`));
  if (flags.length) lines.push('', ...flags);
  if (!view.countingUnmatched) lines.push('', 'rates of ports without a rule: set countUnmatched: true on an interface of the policy');
  return `${lines.join('\n')}\n`;
}
