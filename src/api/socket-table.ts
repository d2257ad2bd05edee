/**
 * The host's listening sockets, as `ss -tulnp` shows them: parsed from
 * /proc/net/{tcp,tcp6,udp,udp6} (the reader's network namespace, which is the
 * one the agent's rules shape), each with the address's scope, the socket's
 * owner uid, and the owning process (pid, command, cgroup and container) where
 * /proc/<pid>/fd lets us match the socket's inode.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { formatIpv6 } from '../kernel/address.js';

/** A TCP socket in LISTEN, or a UDP socket bound and not connected. */
export interface ListeningSocket {
  protocol: 'tcp' | 'udp';
  family: 4 | 6;
  address: string;
  port: number;
  /** wildcard: every address (0.0.0.0, ::); loopback: this host only; specific: one address. */
  scope: 'wildcard' | 'loopback' | 'specific';
  /** uid that created the socket (column "uid" of /proc/net). */
  uid: number;
  inode: number;
}

/** The process holding a socket. */
export interface SocketOwner {
  pid: number;
  command: string;
  /** cgroup v2 path (or the v1 name=systemd one); absent for the root cgroup. */
  cgroup?: string;
  /** Container id (12 hex digits) when the cgroup path names one (docker, containerd, cri-o, podman). */
  container?: string;
}

export type OwnedSocket = ListeningSocket & { process?: SocketOwner };

const TCP_LISTEN = '0A';

const TABLES = [
  { file: 'net/tcp', protocol: 'tcp', v6: false },
  { file: 'net/tcp6', protocol: 'tcp', v6: true },
  { file: 'net/udp', protocol: 'udp', v6: false },
  { file: 'net/udp6', protocol: 'udp', v6: true },
] as const;

/** The listening sockets in the text of one /proc/net/{tcp,tcp6,udp,udp6} file. */
export function parseProcNet(text: string, protocol: 'tcp' | 'udp', v6: boolean): ListeningSocket[] {
  const out: ListeningSocket[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const [localHex = '', localPortHex = ''] = (f[1] ?? '').split(':');
    const remotePort = parseInt((f[2] ?? '').split(':')[1] ?? '', 16);
    const port = parseInt(localPortHex, 16);
    // TCP: listening sockets only; UDP: sockets bound to a port and not connected to a peer (the ones that receive on it).
    if (protocol === 'tcp' ? f[3] !== TCP_LISTEN : remotePort !== 0 || port === 0) continue;
    const address = v6 ? ipv6Of(localHex) : ipv4Of(localHex);
    out.push({ protocol, family: v6 ? 6 : 4, address, port, scope: scopeOf(address), uid: Number(f[7]), inode: Number(f[9]) });
  }
  return out;
}

/** Every listening socket of this network namespace (procRoot: tests point it at captured files). */
export function readListeningSockets(procRoot = '/proc'): ListeningSocket[] {
  const out: ListeningSocket[] = [];
  for (const t of TABLES) {
    let text: string;
    try {
      text = readFileSync(`${procRoot}/${t.file}`, 'utf8');
    } catch {
      continue; // no IPv6 in this kernel or namespace
    }
    out.push(...parseProcNet(text, t.protocol, t.v6));
  }
  return out;
}

/** Listening sockets with their owning processes. */
export function readOwnedSockets(procRoot = '/proc'): OwnedSocket[] {
  const sockets = readListeningSockets(procRoot);
  const owners = ownersOf(new Set(sockets.map((s) => s.inode)), procRoot);
  return sockets.map((s) => {
    const owner = owners.get(s.inode);
    return owner ? { ...s, process: owner } : s;
  });
}

/** Where an address listens: every address, loopback only, or one address. IPv4-mapped IPv6 counts as its IPv4. */
export function scopeOf(address: string): ListeningSocket['scope'] {
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  if (v4 === '0.0.0.0' || v4 === '::') return 'wildcard';
  if (v4 === '::1' || v4.startsWith('127.')) return 'loopback';
  return 'specific';
}

/** /proc/net prints an IPv4 address as one 32-bit word in host (little-endian) order. */
export function ipv4Of(hex: string): string {
  const n = parseInt(hex, 16);
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24].join('.');
}

/** An IPv6 address is four such words; written back in network order and shortened (RFC 5952). */
export function ipv6Of(hex: string): string {
  const bytes: number[] = [];
  for (let w = 0; w < 4; w++) {
    const word = hex.slice(w * 8, w * 8 + 8);
    for (let b = 3; b >= 0; b--) bytes.push(parseInt(word.slice(b * 2, b * 2 + 2), 16));
  }
  if (bytes.slice(0, 10).every((x) => x === 0) && bytes[10] === 0xff && bytes[11] === 0xff) return `::ffff:${bytes.slice(12).join('.')}`;
  return formatIpv6(Uint8Array.from(bytes));
}

/** The cgroup of a process from /proc/<pid>/cgroup text, and the container id it names, if any. */
export function cgroupOf(text: string): { cgroup?: string; container?: string } {
  const lines = text.split('\n').filter(Boolean);
  // cgroup v2 is the "0::" line; on a v1 host, the name=systemd hierarchy names the unit or container.
  const line = lines.find((l) => l.startsWith('0::')) ?? lines.find((l) => l.includes(':name=systemd:'));
  const path = line?.slice(line.indexOf(':', line.indexOf(':') + 1) + 1);
  if (!path || path === '/') return {};
  const id = /(?:^|[/-])([0-9a-f]{64})(?:\.scope)?(?:\/|$)/.exec(path)?.[1];
  return id ? { cgroup: path, container: id.slice(0, 12) } : { cgroup: path };
}

/** inode → owning process, for the inodes wanted, scanning /proc/<pid>/fd. */
export function ownersOf(inodes: Set<number>, procRoot = '/proc'): Map<number, SocketOwner> {
  const out = new Map<number, SocketOwner>();
  if (!inodes.size) return out;
  for (const entry of readdirSync(procRoot)) {
    if (!/^[0-9]+$/.test(entry)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`${procRoot}/${entry}/fd`);
    } catch {
      continue; // another user's process, or gone
    }
    for (const fd of fds) {
      let link: string;
      try {
        link = readlinkSync(`${procRoot}/${entry}/fd/${fd}`);
      } catch {
        continue;
      }
      const m = /^socket:\[([0-9]+)\]$/.exec(link);
      if (!m || !inodes.has(Number(m[1])) || out.has(Number(m[1]))) continue;
      out.set(Number(m[1]), { pid: Number(entry), command: readText(`${procRoot}/${entry}/comm`) ?? '?', ...cgroupOf(readText(`${procRoot}/${entry}/cgroup`) ?? '') });
    }
    if (out.size === inodes.size) break;
  }
  return out;
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}
