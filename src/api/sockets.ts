/**
 * Local sockets bound to a port, read from /proc/net/{tcp,tcp6,udp,udp6}:
 * the process's own network namespace (the agent's), which is the one its
 * rules shape. The owning process is found by the socket's inode among the
 * links in /proc/<pid>/fd, where permissions let us read them.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import type { Listener } from './schemas.js';

const TCP_LISTEN = '0A';
const TABLES = [
  { file: '/proc/net/tcp', protocol: 'tcp', v6: false },
  { file: '/proc/net/tcp6', protocol: 'tcp', v6: true },
  { file: '/proc/net/udp', protocol: 'udp', v6: false },
  { file: '/proc/net/udp6', protocol: 'udp', v6: true },
] as const;

/** TCP sockets listening and unconnected UDP sockets bound on port, with their process where readable. */
export function listenersOn(port: number, protocols: readonly ('tcp' | 'udp')[] = ['tcp', 'udp']): Listener[] {
  const found: Listener[] = [];
  for (const table of TABLES) {
    if (!protocols.includes(table.protocol)) continue;
    let text: string;
    try {
      text = readFileSync(table.file, 'utf8');
    } catch {
      continue; // no IPv6 in this kernel or namespace
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const [localHex = '', localPortHex = ''] = (f[1] ?? '').split(':');
      const remotePort = parseInt((f[2] ?? '').split(':')[1] ?? '', 16);
      const state = f[3];
      if (parseInt(localPortHex, 16) !== port) continue;
      // TCP: listening sockets only; UDP: sockets not connected to a peer (the ones that receive on the port).
      if (table.protocol === 'tcp' ? state !== TCP_LISTEN : remotePort !== 0) continue;
      found.push({ protocol: table.protocol, address: table.v6 ? ipv6Of(localHex) : ipv4Of(localHex), port, inode: Number(f[9]) });
    }
  }
  const owners = ownersOf(new Set(found.map((l) => l.inode)));
  return found.map((l) => {
    const owner = owners.get(l.inode);
    return owner ? { ...l, process: owner } : l;
  });
}

/** /proc/net prints an IPv4 address as one 32-bit word in host (little-endian) order. */
function ipv4Of(hex: string): string {
  const n = parseInt(hex, 16);
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24].join('.');
}

/** An IPv6 address is four such words; written back in network order and shortened. */
function ipv6Of(hex: string): string {
  const bytes: number[] = [];
  for (let w = 0; w < 4; w++) {
    const word = hex.slice(w * 8, w * 8 + 8);
    for (let b = 3; b >= 0; b--) bytes.push(parseInt(word.slice(b * 2, b * 2 + 2), 16));
  }
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16));
  const text = groups.join(':');
  if (text === '0:0:0:0:0:0:0:0') return '::';
  if (text.startsWith('0:0:0:0:0:ffff:')) return `::ffff:${ipv4Of(hex.slice(24))}`;
  return text.replace(/(^|:)0(:0)+(:|$)/, '::');
}

/** inode → owning process, for the inodes wanted, scanning /proc/<pid>/fd. */
function ownersOf(inodes: Set<number>): Map<number, { pid: number; command: string }> {
  const out = new Map<number, { pid: number; command: string }>();
  if (!inodes.size) return out;
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue; // another user's process, or gone
    }
    for (const fd of fds) {
      let link: string;
      try {
        link = readlinkSync(`/proc/${entry}/fd/${fd}`);
      } catch {
        continue;
      }
      const m = /^socket:\[([0-9]+)\]$/.exec(link);
      if (!m || !inodes.has(Number(m[1])) || out.has(Number(m[1]))) continue;
      out.set(Number(m[1]), { pid: Number(entry), command: commandOf(entry) });
    }
    if (out.size === inodes.size) break;
  }
  return out;
}

function commandOf(pid: string): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '?';
  }
}
