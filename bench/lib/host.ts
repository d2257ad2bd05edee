/**
 * What the benchmark needs from the host: a temp directory, a sysctl set for
 * the duration of a function, command helpers. Every change is undone by
 * cleanup.ts, also on failure and on SIGINT.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nsExec } from '../../test/helpers/net.js';
import { onCleanup } from './cleanup.js';

let dir: string | undefined;

/** A file path in the benchmark's own temp directory (removed at exit). */
export function tempPath(name: string): string {
  if (!dir) {
    const created = mkdtempSync(join(tmpdir(), 'portshaper-bench-'));
    dir = created;
    onCleanup(`remove ${created}`, () => rmSync(created, { recursive: true, force: true }));
  }
  return join(dir, name);
}

/** Write text to a temp file and return its path. */
export function tempFile(name: string, text: string): string {
  const path = tempPath(name);
  writeFileSync(path, text);
  return path;
}

/**
 * Set a sysctl (by its /proc/sys path) while fn runs; the old value comes
 * back afterwards, also when fn throws or the process is interrupted.
 */
export async function withSysctl<T>(name: string, value: string, fn: () => Promise<T>): Promise<T> {
  const path = `/proc/sys/${name.replaceAll('.', '/')}`;
  const old = readFileSync(path, 'utf8').trim();
  const restore = onCleanup(`restore ${name}=${old}`, () => writeFileSync(path, old));
  writeFileSync(path, value);
  try {
    return await fn();
  } finally {
    restore();
  }
}

/** Load an nftables ruleset file inside a namespace. */
export async function nftFile(ns: string, path: string): Promise<void> {
  await nsExec(ns, ['nft', '-f', path], { timeoutMs: 120_000 });
}

/** Milliseconds taken by fn. */
export async function timeMs(fn: () => Promise<unknown> | unknown): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}
