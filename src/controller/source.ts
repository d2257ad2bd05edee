/**
 * Where the agent's policy comes from, and whether the agent may write it.
 *
 * On a fleet the policy is a Kubernetes ConfigMap mounted as a directory:
 * one file per key, the same for every node, plus optional per-node files
 * `node.<NODE_NAME>.yaml` (spec.nodeName reaches the pod through the Downward
 * API; node labels do not). kubelet mounts it read-only and replaces it
 * whole, so API writes must be refused there, before anything is applied.
 */
import { accessSync, constants, existsSync, lstatSync, readlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** The policy file in force and why it was chosen. */
export interface PolicySource {
  /** The file read (absolute). */
  path: string;
  /** "node": node.<NODE_NAME>.yaml of the policy directory; "file": the configured policy file. */
  kind: 'node' | 'file';
}

/** The per-node file name for a node: node.<name>.yaml. */
export function nodePolicyName(nodeName: string): string {
  return `node.${nodeName}.yaml`;
}

/**
 * The file to read now: node.<nodeName>.yaml beside the configured file when
 * nodeName is set and that file exists, else the configured file. Called at
 * every load, so a per-node file added to (or removed from) a ConfigMap
 * takes over (or hands back) at the next reload.
 */
export function resolvePolicySource(policyFile: string, nodeName: string | undefined): PolicySource {
  if (nodeName) {
    const nodeFile = join(dirname(policyFile), nodePolicyName(nodeName));
    if (existsSync(nodeFile)) return { path: nodeFile, kind: 'node' };
  }
  return { path: policyFile, kind: 'file' };
}

/**
 * Why the agent cannot write the policy file back (API writes persist into
 * it), or undefined when it can. Two cases:
 * - kubelet's layout of a ConfigMap/Secret volume (pkg/volume/util/atomic_writer.go):
 *   each key is a symlink `<key> -> ..data/<key>` and `..data` a symlink to a
 *   timestamped directory. Even when writable (an emptyDir copy, a test), a
 *   file written there is replaced at kubelet's next sync.
 * - a directory the agent cannot create files in: a read-only mount (EROFS,
 *   kubelet mounts ConfigMaps so), or no write permission (EACCES).
 */
export function readOnlyReason(path: string): string | undefined {
  const dir = dirname(path);
  if (isKubeletManaged(path)) return 'it is a key of a mounted Kubernetes ConfigMap (kubelet replaces the whole directory at each update)';
  try {
    accessSync(dir, constants.W_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EROFS') return `its directory ${dir} is on a read-only file system`;
    if (code === 'EACCES' || code === 'EPERM') return `its directory ${dir} is not writable by the agent`;
  }
  return undefined;
}

/** Whether path is a key of kubelet's atomic-writer layout: a symlink into ..data of its directory. */
export function isKubeletManaged(path: string): boolean {
  try {
    if (!lstatSync(path).isSymbolicLink()) return false;
    const target = readlinkSync(path);
    return target === join('..data', basename(path)) && lstatSync(join(dirname(path), '..data')).isSymbolicLink();
  } catch {
    return false;
  }
}
