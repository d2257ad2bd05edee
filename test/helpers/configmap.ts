/**
 * A Kubernetes ConfigMap volume as kubelet lays it out and updates it
 * (pkg/volume/util/atomic_writer.go), replayed step by step on a temporary
 * directory, and mounted read-only elsewhere as a container sees it:
 *
 *   ..2026_12_02_12_00_00.123456789/policy.yaml   the payload, one file per key
 *   ..data -> ..2026_12_02_12_00_00.123456789     swapped atomically at each update
 *   policy.yaml -> ..data/policy.yaml             one symlink per key
 *
 * An update writes a new timestamped directory, points `..data_tmp` at it,
 * renames `..data_tmp` over `..data`, adds symlinks for new keys, removes
 * those of deleted keys and deletes the old directory: in the mounted
 * directory inotify reports ..<ts> created, ..data_tmp created, moved from,
 * ..data moved to and the old ..<ts> deleted, none naming a key.
 */
import { existsSync, mkdirSync, mkdtempSync, readlinkSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { run } from './net.js';

export class ConfigMapVolume {
  readonly root = mkdtempSync(join(tmpdir(), 'ps-configmap-'));
  /** Where kubelet writes (its own view of the volume). */
  readonly source = join(this.root, 'kubelet');
  /** Where the container sees it: a read-only bind mount of source (after mountReadOnly). */
  readonly mountPoint = join(this.root, 'mounted');
  private keys = new Set<string>();
  private mounted = false;

  constructor() {
    mkdirSync(this.source);
    mkdirSync(this.mountPoint);
  }

  /** Path of a key as the container sees it. */
  path(key: string): string {
    return join(this.mountPoint, key);
  }

  /** Write the whole ConfigMap (every key; keys left out are removed), exactly as kubelet does. */
  write(data: Record<string, string>): void {
    const dataLink = join(this.source, '..data');
    const oldTsDir = existsSync(dataLink) ? readlinkSync(dataLink) : undefined;
    // 1. the payload in a new timestamped directory (os.MkdirTemp with a "..<UTC time>." prefix)
    const stamp = new Date().toISOString().replace(/[-:]/g, '_').replace('T', '_').replace(/\..*/, '');
    const tsDir = mkdtempSync(join(this.source, `..${stamp}.`));
    for (const [key, text] of Object.entries(data)) writeFileSync(join(tsDir, key), text, { mode: 0o644 });
    // 2. ..data_tmp -> the new directory, renamed over ..data (the atomic switch)
    const tmpLink = join(this.source, '..data_tmp');
    symlinkSync(basename(tsDir), tmpLink);
    renameSync(tmpLink, dataLink);
    // 3. a symlink for each new key, none removed for kept ones
    for (const key of Object.keys(data)) {
      if (!this.keys.has(key)) symlinkSync(join('..data', key), join(this.source, key));
    }
    // 4. symlinks of removed keys go, then the old payload
    for (const key of this.keys) if (!(key in data)) unlinkSync(join(this.source, key));
    this.keys = new Set(Object.keys(data));
    if (oldTsDir) rmSync(join(this.source, oldTsDir), { recursive: true, force: true });
  }

  /** Bind-mount the volume read-only at mountPoint, as kubelet mounts ConfigMap volumes into containers. */
  async mountReadOnly(): Promise<void> {
    await run('mount', ['--bind', this.source, this.mountPoint]);
    this.mounted = true;
    await run('mount', ['-o', 'remount,bind,ro', this.mountPoint]);
  }

  /** Unmount and delete everything. */
  async remove(): Promise<void> {
    if (this.mounted) await run('umount', [this.mountPoint], { allowFailure: true });
    this.mounted = false;
    rmSync(this.root, { recursive: true, force: true });
  }
}
