/**
 * Parsing of captured /proc/net/{tcp,tcp6,udp,udp6} text: listening TCP and
 * bound, unconnected UDP sockets only; IPv4, IPv6 and IPv4-mapped IPv6
 * addresses with their scope; uid and inode; and the cgroup/container of an
 * owning process.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cgroupOf, ipv6Of, parseProcNet, readOwnedSockets, scopeOf } from '../../../src/api/socket-table.js';

const HEADER4 = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode';
const HEADER6 = '  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode';

const TCP = [
  HEADER4,
  // 0.0.0.0:2024 LISTEN, uid 0
  '   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1527 1 000000003bfc1dd0 100 0 0 10 0',
  // 192.0.2.2:40794 -> 203.113.80... ESTABLISHED: not a listener
  '   1: 020200C0:9F5A 507100CB:0050 01 00000000:00000000 03:00001559 00000000     0        0 0 3 0000000075d8ed2d',
  // 127.0.0.1:631 LISTEN, uid 1000
  '   2: 0100007F:0277 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 22334 1 0000000000000000 100 0 0 10 0',
  // 10.0.0.5:8080 LISTEN, uid 33
  '   3: 0500000A:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000    33        0 4455 1 0000000000000000 100 0 0 10 0',
].join('\n');

const TCP6 = [
  HEADER6,
  // [::]:443 LISTEN
  '   0: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 9001 1 0000000000000000 100 0 0 10 0',
  // [::1]:9180 LISTEN
  '   1: 00000000000000000000000001000000:23DC 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 9002 1 0000000000000000 100 0 0 10 0',
  // [::ffff:127.0.0.1]:5432 LISTEN (IPv4-mapped)
  '   2: 0000000000000000FFFF00000100007F:1538 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   105        0 9003 1 0000000000000000 100 0 0 10 0',
  // [2001:db8::10]:8443 LISTEN
  '   3: B80D0120000000000000000010000000:20FB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 9004 1 0000000000000000 100 0 0 10 0',
  // [::ffff:192.0.2.7]:22 <- connected (ESTABLISHED): not a listener
  '   4: 0000000000000000FFFF00000702000C0:0016 0000000000000000FFFF0000650200C0:C350 01 00000000:00000000 00:00000000 00000000     0        0 9005 1 0000000000000000 20 4 29 10 -1',
].join('\n');

const UDP = [
  HEADER4 + ' ref pointer drops',
  // 0.0.0.0:53 unconnected
  '  100: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 7001 2 0000000000000000 0',
  // 10.0.0.5:41000 connected to 8.8.8.8:53: a client, not a listener
  '  101: 0500000A:A028 08080808:0035 01 00000000:00000000 00:00000000 00000000  1000        0 7002 2 0000000000000000 0',
].join('\n');

const UDP6 = [
  HEADER6 + ' ref pointer drops',
  // [::ffff:0.0.0.0]:5353 unconnected: the IPv4 wildcard as a mapped address
  '  200: 0000000000000000FFFF000000000000:14E9 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000   107        0 7003 2 0000000000000000 0',
].join('\n');

describe('parseProcNet', () => {
  it('keeps TCP sockets in LISTEN, with address, scope, uid and inode', () => {
    expect(parseProcNet(TCP, 'tcp', false)).toEqual([
      { protocol: 'tcp', family: 4, address: '0.0.0.0', port: 2024, scope: 'wildcard', uid: 0, inode: 1527 },
      { protocol: 'tcp', family: 4, address: '127.0.0.1', port: 631, scope: 'loopback', uid: 1000, inode: 22334 },
      { protocol: 'tcp', family: 4, address: '10.0.0.5', port: 8080, scope: 'specific', uid: 33, inode: 4455 },
    ]);
  });

  it('reads IPv6 and IPv4-mapped IPv6 listeners', () => {
    expect(parseProcNet(TCP6, 'tcp', true).map((s) => [s.address, s.port, s.scope, s.uid])).toEqual([
      ['::', 443, 'wildcard', 0],
      ['::1', 9180, 'loopback', 0],
      ['::ffff:127.0.0.1', 5432, 'loopback', 105],
      ['2001:db8::10', 8443, 'specific', 0],
    ]);
  });

  it('keeps UDP sockets that are bound and not connected', () => {
    expect(parseProcNet(UDP, 'udp', false)).toEqual([{ protocol: 'udp', family: 4, address: '0.0.0.0', port: 53, scope: 'wildcard', uid: 101, inode: 7001 }]);
    expect(parseProcNet(UDP6, 'udp', true)).toEqual([{ protocol: 'udp', family: 6, address: '::ffff:0.0.0.0', port: 5353, scope: 'wildcard', uid: 107, inode: 7003 }]);
  });

  it('ignores the header, blank and short lines', () => {
    expect(parseProcNet(`${HEADER4}\n\n  garbage line\n`, 'tcp', false)).toEqual([]);
  });
});

describe('addresses', () => {
  it('shortens IPv6 as RFC 5952 does', () => {
    expect(ipv6Of('00000000000000000000000000000000')).toBe('::');
    expect(ipv6Of('000080FE000000000000000001000000')).toBe('fe80::1');
    expect(ipv6Of('B80D0120000000000000000010000000')).toBe('2001:db8::10');
    // 2001:db8:0:0:0:1:0:0: the longer zero run is the one compressed
    expect(ipv6Of('B80D0120000000000100000000000000')).toBe('2001:db8::1:0:0');
    expect(ipv6Of('B80D0120000000000000000001000000')).toBe('2001:db8::1');
  });

  it('classifies scopes, IPv4-mapped included', () => {
    expect(scopeOf('0.0.0.0')).toBe('wildcard');
    expect(scopeOf('::')).toBe('wildcard');
    expect(scopeOf('::ffff:0.0.0.0')).toBe('wildcard');
    expect(scopeOf('127.0.0.53')).toBe('loopback');
    expect(scopeOf('::ffff:127.0.0.1')).toBe('loopback');
    expect(scopeOf('::1')).toBe('loopback');
    expect(scopeOf('192.0.2.1')).toBe('specific');
  });
});

describe('cgroupOf', () => {
  it('names the container of docker, containerd (Kubernetes) and podman cgroups', () => {
    const id = 'a'.repeat(12) + 'b'.repeat(52);
    expect(cgroupOf(`0::/system.slice/docker-${id}.scope\n`)).toEqual({ cgroup: `/system.slice/docker-${id}.scope`, container: 'aaaaaaaaaaaa' });
    expect(cgroupOf(`0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-${id}.scope\n`).container).toBe('aaaaaaaaaaaa');
    expect(cgroupOf(`12:pids:/docker/${id}\n1:name=systemd:/docker/${id}\n`).container).toBe('aaaaaaaaaaaa');
  });

  it('gives the cgroup of a service and nothing for the root cgroup', () => {
    expect(cgroupOf('0::/system.slice/nginx.service\n')).toEqual({ cgroup: '/system.slice/nginx.service' });
    expect(cgroupOf('0::/\n')).toEqual({});
    expect(cgroupOf('')).toEqual({});
  });
});

describe('readOwnedSockets', () => {
  const root = mkdtempSync(join(tmpdir(), 'ps-proc-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('joins sockets to processes through /proc/<pid>/fd links', () => {
    mkdirSync(join(root, 'net'));
    writeFileSync(join(root, 'net', 'tcp'), TCP);
    writeFileSync(join(root, 'net', 'udp'), UDP);
    mkdirSync(join(root, '4242', 'fd'), { recursive: true });
    writeFileSync(join(root, '4242', 'comm'), 'nginx\n');
    writeFileSync(join(root, '4242', 'cgroup'), '0::/system.slice/nginx.service\n');
    symlinkSync('socket:[4455]', join(root, '4242', 'fd', '7'));
    symlinkSync('/dev/null', join(root, '4242', 'fd', '0'));
    const sockets = readOwnedSockets(root);
    expect(sockets.map((s) => [s.protocol, s.port, s.process?.command])).toEqual([
      ['tcp', 2024, undefined],
      ['tcp', 631, undefined],
      ['tcp', 8080, 'nginx'],
      ['udp', 53, undefined],
    ]);
    expect(sockets[2]!.process).toEqual({ pid: 4242, command: 'nginx', cgroup: '/system.slice/nginx.service' });
  });
});
