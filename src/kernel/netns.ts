/**
 * Run kernel calls inside another network namespace. libbpf's tc helpers
 * open their netlink socket in the calling thread's namespace, and
 * if_nametoindex() resolves names there too; this switches the main thread
 * for the duration of a synchronous function and always switches back.
 *
 * Safe in Node because the function is synchronous: no other JavaScript runs
 * while the thread is elsewhere, and libuv's worker threads never move.
 */
import { closeSync, openSync } from 'node:fs';
import { CODE, PortshaperError } from '../errors.js';
import { setNetns } from './libbpf.js';

/** Path of a named namespace as `ip netns` creates it. */
export function netnsPath(name: string): string {
  return name.startsWith('/') ? name : `/run/netns/${name}`;
}

/** Call fn with the calling thread in network namespace `ns` (a name or a path). */
export function inNetns<T>(ns: string, fn: () => T): T {
  const path = netnsPath(ns);
  let target: number;
  try {
    target = openSync(path, 'r');
  } catch (cause) {
    throw new PortshaperError(CODE.PS_NETNS, `network namespace ${path} cannot be opened`, {
      hint: 'check the name with "ip netns list"',
      cause,
    });
  }
  const home = openSync('/proc/thread-self/ns/net', 'r');
  try {
    setNetns(target, path);
    try {
      return fn();
    } finally {
      setNetns(home, 'of the agent (returning)');
    }
  } finally {
    closeSync(target);
    closeSync(home);
  }
}
