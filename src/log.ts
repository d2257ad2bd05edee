/**
 * The agent's logger: pino JSON lines on stdout (what journald and log
 * shippers want), or one readable line per event when stdout is a terminal.
 */
import { Writable } from 'node:stream';
import pino, { type Logger } from 'pino';

export type { Logger };

const LEVEL_NAMES: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const HIDDEN = new Set(['level', 'time', 'msg', 'pid', 'hostname']);

/** Render one pino JSON line for a human: "12:00:01 INFO  message key=value". */
export function prettyLine(line: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const time = new Date(Number(rec.time)).toISOString().slice(11, 19);
  const level = (LEVEL_NAMES[Number(rec.level)] ?? String(rec.level)).padEnd(5);
  const fields = Object.entries(rec)
    .filter(([k]) => !HIDDEN.has(k))
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  return `${time} ${level} ${String(rec.msg ?? '')}${fields ? `  ${fields}` : ''}`;
}

function prettyStream(out: NodeJS.WritableStream): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) out.write(`${prettyLine(line)}\n`);
      done();
    },
  });
}

/** Create the process logger; pretty when stdout is a TTY unless json is forced. */
export function createLogger(opts: { level?: string; json?: boolean } = {}): Logger {
  const pretty = !opts.json && process.stdout.isTTY;
  const options = { level: opts.level ?? 'info', base: { pid: process.pid } };
  return pretty ? pino(options, prettyStream(process.stdout)) : pino(options, pino.destination({ fd: 1, sync: true }));
}
