/**
 * `portshaper top`: the busiest ports, limited or not, refreshed every
 * second from GET /v1/ports. On a terminal: a full-screen view sized to the
 * window (80×24 is enough), sorted by rate, drops or port (keys r, d, p),
 * quit with q. Elsewhere (a pipe, a log): one plain block per refresh.
 */
import type { PortEntry, PortsView } from '../api/ports-schemas.js';
import { ApiUnreachable, UsageError } from '../errors.js';
import { parseCommand } from './args.js';
import { ApiClient, CLIENT_HELP, CLIENT_OPTIONS } from './client.js';
import { formatBits, limitLabel, listenLabel, portLabel, processLabel } from './ports.js';

export const TOP_HELP = `Usage: portshaper top [options]

A live view of the busiest ports, refreshed every second: rate, configured
limit, drops and ECN marks per second, and who listens. Ports without a rule
show traffic only where the policy sets countUnmatched: true on an interface.

Keys: r sort by rate, d by drops, p by port, q quit.
Not on a terminal, it prints one plain block per refresh.

Options:
  --sort rate|drops|port  initial order (default rate)
  --interval SECONDS      refresh period (default 1)
  --count N               stop after N refreshes (default: until q or Ctrl-C)
${CLIENT_HELP.split('\n').filter((l) => !l.includes('--json') && !l.includes('JSON response')).join('\n')}

Exit status: 0 success; 2 the agent cannot be reached or failed.
`;

export type SortKey = 'rate' | 'drops' | 'port';
const SORT_KEYS: readonly SortKey[] = ['rate', 'drops', 'port'];

/** One line of the view: a port in one direction. */
export interface TopRow {
  label: string;
  protocol: string;
  direction: 'in' | 'out';
  bitsPerSecond: number;
  limit: string;
  dropsPerSecond: number;
  marksPerSecond: number;
  listen: string;
  process: string;
  port: number;
}

/** Rows of a view: each direction with traffic or a rule; ECN marks/s from the previous view's counters. */
export function topRows(view: PortsView, previous: PortsView | undefined, seconds: number): TopRow[] {
  const marksBefore = new Map<string, number>();
  for (const e of previous?.ports ?? []) for (const d of ['ingress', 'egress'] as const) marksBefore.set(rowKey(e, d), e[d].markedPackets);
  const rows: TopRow[] = [];
  for (const e of view.ports) {
    for (const d of ['ingress', 'egress'] as const) {
      const t = e[d];
      if (t.source === 'none' && !t.rules.length) continue;
      const before = marksBefore.get(rowKey(e, d));
      rows.push({
        label: portLabel(e),
        protocol: e.protocol,
        direction: d === 'ingress' ? 'in' : 'out',
        bitsPerSecond: t.bitsPerSecond,
        limit: limitLabel(t),
        dropsPerSecond: t.droppedPacketsPerSecond,
        marksPerSecond: before !== undefined && seconds > 0 && t.markedPackets >= before ? (t.markedPackets - before) / seconds : 0,
        listen: listenLabel(e),
        process: processLabel(e),
        port: e.port,
      });
    }
  }
  return rows;
}

function rowKey(e: PortEntry, d: string): string {
  return `${e.side}/${e.protocol}/${e.range ?? e.port}/${d}`;
}

/** Sort rows in place by the chosen key (ties by port). */
export function sortRows(rows: TopRow[], key: SortKey): TopRow[] {
  const by: Record<SortKey, (a: TopRow, b: TopRow) => number> = {
    rate: (a, b) => b.bitsPerSecond - a.bitsPerSecond,
    drops: (a, b) => b.dropsPerSecond - a.dropsPerSecond || b.bitsPerSecond - a.bitsPerSecond,
    port: () => 0,
  };
  return rows.sort((a, b) => by[key](a, b) || a.port - b.port || a.protocol.localeCompare(b.protocol) || a.direction.localeCompare(b.direction));
}

/** The screen: a header, column titles and as many rows as fit, each cut to the width. */
export function renderTop(rows: TopRow[], opts: { width: number; height: number; sort: SortKey; time: string; countingUnmatched: boolean; note?: string }): string[] {
  const fit = (s: string) => (s.length > opts.width ? s.slice(0, opts.width) : s);
  const head = `portshaper top  ${opts.time}  sort: ${opts.sort}  [r]ate [d]rops [p]ort [q]uit`;
  const cols = (c: string[]) =>
    `${c[0]!.padEnd(12)}${c[1]!.padEnd(6)}${c[2]!.padEnd(4)}${c[3]!.padStart(10)} ${c[4]!.padStart(10)}${c[5]!.padStart(8)}${c[6]!.padStart(7)}  ${c[7]!.padEnd(7)}${c[8]!}`;
  const lines = [fit(head), fit(cols(['PORT', 'PROTO', 'DIR', 'RATE', 'LIMIT', 'DROP/s', 'ECN/s', 'LISTEN', 'PROCESS']))];
  const room = Math.max(0, opts.height - 3);
  for (const r of rows.slice(0, room)) {
    lines.push(fit(cols([r.label, r.protocol, r.direction, formatBits(r.bitsPerSecond), r.limit, perSecond(r.dropsPerSecond), perSecond(r.marksPerSecond), r.listen, r.process])));
  }
  const status = opts.note ?? (rows.length > room ? `${rows.length - room} more ports` : !opts.countingUnmatched ? 'ports without a rule: set countUnmatched: true on an interface' : '');
  if (status) lines.push(fit(status));
  return lines;
}

function perSecond(n: number): string {
  return n === 0 ? '0' : n < 10 ? n.toFixed(1) : String(Math.round(n));
}

/** Run the top command; returns the exit code. */
export async function runTop(argv: string[]): Promise<number> {
  const { values } = parseCommand('top', argv, {
    ...CLIENT_OPTIONS,
    sort: { type: 'string' },
    interval: { type: 'string' },
    count: { type: 'string' },
  });
  if (values.help) {
    process.stdout.write(TOP_HELP);
    return 0;
  }
  let sort = (values.sort ?? 'rate') as SortKey;
  if (!SORT_KEYS.includes(sort)) throw new UsageError(`--sort must be one of ${SORT_KEYS.join(', ')}`);
  const interval = Number(values.interval ?? 1);
  if (!(interval >= 0.1 && interval <= 3600)) throw new UsageError('--interval must be a number of seconds between 0.1 and 3600');
  const count = values.count === undefined ? Infinity : Number(values.count);
  if (!(count >= 1)) throw new UsageError('--count must be a positive integer');
  const client = ApiClient.fromOptions(values);
  const tty = Boolean(process.stdout.isTTY && process.stdin.isTTY);

  let previous: { view: PortsView; ms: number } | undefined;
  let rows: TopRow[] = [];
  let note: string | undefined;
  let counting = false;
  const draw = () => {
    const lines = renderTop(sortRows(rows, sort), {
      width: tty ? process.stdout.columns || 80 : 200,
      height: tty ? process.stdout.rows || 24 : rows.length + 3,
      sort,
      time: new Date().toTimeString().slice(0, 8),
      countingUnmatched: counting,
      ...(note ? { note } : {}),
    });
    // Home, draw each line over the old one and clear its rest, then clear below: no flicker over SSH.
    process.stdout.write(tty ? `\x1b[H${lines.map((l) => `${l}\x1b[K`).join('\r\n')}\x1b[J` : `${lines.join('\n')}\n\n`);
  };
  const refresh = async () => {
    try {
      const res = await client.request<PortsView>('GET', '/v1/ports?all=true');
      if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
      const ms = performance.now();
      rows = topRows(res.body, previous?.view, previous ? (ms - previous.ms) / 1000 : 0);
      counting = res.body.countingUnmatched;
      previous = { view: res.body, ms };
      note = undefined;
    } catch (err) {
      // On a terminal keep the last picture and say why it is stale; elsewhere the caller sees the error.
      if (!tty) throw err;
      note = err instanceof ApiUnreachable ? err.message : `API error: ${(err as Error).message}`;
    }
    draw();
  };

  if (!tty) {
    for (let i = 0; i < count; i++) {
      if (i > 0) await sleep(interval * 1000);
      await refresh();
    }
    return 0;
  }

  return new Promise<number>((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    let done = 0;
    let stopped = false;
    const finish = () => {
      if (stopped) return;
      stopped = true;
      clearTimeout(timer);
      process.stdin.setRawMode(false);
      process.stdin.pause();
      process.stdout.off('resize', draw);
      // Leave the alternate screen and show the cursor again.
      process.stdout.write('\x1b[?25h\x1b[?1049l');
      resolve(0);
    };
    const tick = async () => {
      await refresh();
      if (stopped) return;
      if (++done >= count) return finish();
      timer = setTimeout(() => void tick(), interval * 1000);
    };
    process.stdout.write('\x1b[?1049h\x1b[?25l');
    process.stdout.on('resize', draw);
    process.stdin.setRawMode(true);
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (key: string) => {
      if (key === 'q' || key === 'Q' || key === '\x03') return finish();
      const next = ({ r: 'rate', d: 'drops', p: 'port' } as Record<string, SortKey>)[key.toLowerCase()];
      if (next) {
        sort = next;
        draw();
      }
    });
    void tick();
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
