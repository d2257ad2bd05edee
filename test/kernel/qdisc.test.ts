/**
 * The HTB tree over our own rtnetlink, on veths in a private namespace: the
 * root replaces only the kernel's default unless told otherwise, classes are
 * created and changed in place (leaf and counters kept), rates above 4 GB/s
 * survive the trip, removal gives the device back its default, and a device
 * that vanished is "nothing to remove". Checked against what tc(8) reads.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ForeignQdiscError, NetlinkError } from '../../src/errors.js';
import { inNetns } from '../../src/kernel/netns.js';
import {
  deleteHtbClass,
  ensureHtbRoot,
  htbClassParams,
  listHtbClasses,
  removeHtbRoot,
  rootQdisc,
  setHtbClass,
  type HtbClassSpec,
} from '../../src/kernel/qdisc.js';
import { describeKernel } from '../helpers/env.js';
import { createTopology, ifindex, nsExec, run, type Topology } from '../helpers/net.js';

interface TcQdisc {
  kind: string;
  handle: string;
  parent?: string;
  root?: boolean;
  packets?: number;
  options?: Record<string, unknown>;
}

describeKernel('HTB qdisc over rtnetlink (veth in a private namespace)', () => {
  let topo: Topology;
  let dev: { ifindex: number; ifname: string };
  const inA = <T>(fn: () => T): T => inNetns(topo.nsA, fn);
  const class7 = (bps: number): HtbClassSpec => ({ minor: 7, ...htbClassParams(bps, 1e6, 10e6) });

  const tcQdiscs = async (ifname = topo.ifA): Promise<TcQdisc[]> =>
    JSON.parse((await run('tc', ['-j', '-s', '-n', topo.nsA, 'qdisc', 'show', 'dev', ifname])).stdout) as TcQdisc[];
  // iproute2 6.1 prints HTB classes as text even with -j.
  const tcClass = async (id: string): Promise<string | undefined> =>
    (await run('tc', ['-n', topo.nsA, 'class', 'show', 'dev', topo.ifA])).stdout.split('\n').find((l) => l.startsWith(`class htb ${id} `));
  const leaf7 = async () => (await tcQdiscs()).find((q) => q.kind === 'bfifo' && q.parent === '5053:7');
  // UDP to the discard port, steered into class 5053:7 by nft (skb->priority, as the BPF program does).
  const sendToClass7 = (n: number) => nsExec(topo.nsA, ['bash', '-c', `for i in $(seq ${n}); do echo x > /dev/udp/${topo.ipB}/9; done`]);

  /** A second veth pair inside namespace A, up, for tests that need a device of their own. */
  const addVeth = async (name: string): Promise<{ ifindex: number; ifname: string }> => {
    await run('ip', ['-n', topo.nsA, 'link', 'add', 'name', `${name}0`, 'type', 'veth', 'peer', 'name', `${name}1`]);
    for (const end of ['0', '1']) await run('ip', ['-n', topo.nsA, 'link', 'set', 'dev', `${name}${end}`, 'up']);
    return { ifindex: await ifindex(topo.nsA, `${name}0`), ifname: `${name}0` };
  };

  beforeAll(async () => {
    topo = await createTopology('qdisc');
    dev = { ifindex: topo.ifindexA, ifname: topo.ifA };
    await run('ip', ['netns', 'exec', topo.nsA, 'nft', 'add table inet psqdisc']);
    await run('ip', ['netns', 'exec', topo.nsA, 'nft', 'add chain inet psqdisc out { type filter hook output priority 0; }']);
    await run('ip', ['netns', 'exec', topo.nsA, 'nft', 'add rule inet psqdisc out udp dport 9 meta priority set 5053:7']);
  });
  afterAll(async () => {
    await topo?.destroy();
  });

  it('reports the kernel default root of a fresh veth (noqueue 0:) as builtin', () => {
    expect(inA(() => rootQdisc(dev.ifindex, dev.ifname)), `root qdisc of ${dev.ifname}`).toEqual({ kind: 'noqueue', handle: 0, builtin: true, ours: false });
  });

  it('installs its HTB root 5053: without a default class, once', async () => {
    expect(inA(() => ensureHtbRoot(dev.ifindex, dev.ifname, { replace: false })), 'first ensureHtbRoot').toEqual({ installed: true });
    expect(inA(() => ensureHtbRoot(dev.ifindex, dev.ifname, { replace: false })), 'second ensureHtbRoot').toEqual({ installed: false });
    const [root, ...others] = await tcQdiscs();
    expect(others, 'qdiscs besides the root').toEqual([]);
    expect(root, `tc qdisc show dev ${dev.ifname}`).toMatchObject({ kind: 'htb', handle: '5053:', root: true, options: { default: '0', r2q: 10 } });
    expect(root!.options, 'HTB direct queue counter').toHaveProperty('direct_packets_stat');
    expect(inA(() => rootQdisc(dev.ifindex, dev.ifname))).toEqual({ kind: 'htb', handle: 0x5053_0000, builtin: false, ours: true });
  });

  it('creates class 5053:7 at its rate with a bfifo leaf 7:, as tc reads them', async () => {
    const spec = class7(10e6);
    inA(() => setHtbClass(dev.ifindex, dev.ifname, spec));
    expect(await tcClass('5053:7'), 'tc class show').toMatch(/ root leaf 7: .*rate 10Mbit ceil 10Mbit /);
    expect(await leaf7(), 'leaf qdisc of 5053:7').toMatchObject({ handle: '7:', options: { limit: spec.leafLimitBytes } });
    expect(inA(() => listHtbClasses(dev.ifindex, dev.ifname))).toEqual(
      new Map([[7, { minor: 7, rateBytesPerSec: 1_250_000, ceilBytesPerSec: 1_250_000, bufferNs: Math.ceil(spec.burstNs / 64) * 64, quantum: spec.quantum, leafKind: 'bfifo', leafLimitBytes: spec.leafLimitBytes }]]),
    );
  });

  it('agrees with tc on a class tc creates with the same parameters', async () => {
    const spec = class7(10e6);
    await run('tc', ['-n', topo.nsA, 'class', 'add', 'dev', dev.ifname, 'parent', '5053:', 'classid', '5053:9', 'htb', 'rate', '10mbit', 'ceil', '10mbit', 'burst', '1514b', 'cburst', '1514b', 'quantum', String(spec.quantum)]);
    try {
      const classes = inA(() => listHtbClasses(dev.ifindex, dev.ifname));
      const [ours, theirs] = [classes.get(7)!, classes.get(9)!];
      expect({ ...theirs, bufferNs: 0 }, 'class 5053:9 from tc').toEqual({ ...ours, minor: 9, bufferNs: 0, leafKind: undefined, leafLimitBytes: undefined });
      // tc truncates the burst time to whole microseconds before converting it to ticks.
      expect(Math.abs(theirs.bufferNs - ours.bufferNs), 'burst of one 1514-byte frame, tc vs ours (ns)').toBeLessThan(1000);
    } finally {
      expect(inA(() => deleteHtbClass(dev.ifindex, dev.ifname, 9)), 'delete tc-made 5053:9').toBe(true);
    }
  });

  it('changes the class in place: same leaf, counters kept, new rate and limit', async () => {
    await sendToClass7(5);
    const before = await leaf7();
    expect(before?.packets, 'packets through leaf 7: before the change').toBeGreaterThanOrEqual(5);
    const spec = class7(25e6);
    inA(() => setHtbClass(dev.ifindex, dev.ifname, spec));
    expect(await leaf7(), 'leaf 7: after the change').toMatchObject({ handle: '7:', packets: before!.packets, options: { limit: spec.leafLimitBytes } });
    expect(await tcClass('5053:7')).toMatch(/rate 25Mbit ceil 25Mbit /);
    expect(inA(() => listHtbClasses(dev.ifindex, dev.ifname)).get(7)).toMatchObject({ rateBytesPerSec: 3_125_000, quantum: spec.quantum, leafLimitBytes: spec.leafLimitBytes });
    await sendToClass7(5);
    expect((await leaf7())?.packets, 'packets through leaf 7: after 5 more').toBe(before!.packets! + 5);
  });

  it('carries 40gbit (5e9 bytes/s, above the u32 rate field) in RATE64/CEIL64', async () => {
    inA(() => setHtbClass(dev.ifindex, dev.ifname, class7(40e9)));
    expect(inA(() => listHtbClasses(dev.ifindex, dev.ifname)).get(7)).toMatchObject({ rateBytesPerSec: 5e9, ceilBytesPerSec: 5e9, quantum: 200_000 });
    expect(await tcClass('5053:7')).toMatch(/rate 40Gbit ceil 40Gbit /);
  });

  it('deletes a class with its leaf; a missing class is "nothing deleted"', async () => {
    expect(inA(() => deleteHtbClass(dev.ifindex, dev.ifname, 7)), 'delete 5053:7').toBe(true);
    expect(inA(() => deleteHtbClass(dev.ifindex, dev.ifname, 7)), 'delete 5053:7 again').toBe(false);
    expect(await tcClass('5053:7')).toBeUndefined();
    expect(await leaf7()).toBeUndefined();
    expect(inA(() => listHtbClasses(dev.ifindex, dev.ifname)).size).toBe(0);
  });

  it('refuses a foreign root, changing nothing, and replaces it when allowed', async () => {
    expect(inA(() => removeHtbRoot(dev.ifindex, dev.ifname)), 'remove our root').toBe(true);
    await run('tc', ['-n', topo.nsA, 'qdisc', 'add', 'dev', dev.ifname, 'root', 'handle', '1:', 'tbf', 'rate', '1mbit', 'burst', '10k', 'latency', '50ms']);
    const tbf = { kind: 'tbf', handle: 0x1_0000, builtin: false, ours: false };
    expect(inA(() => rootQdisc(dev.ifindex, dev.ifname))).toEqual(tbf);
    const refused = (() => {
      try {
        inA(() => ensureHtbRoot(dev.ifindex, dev.ifname, { replace: false }));
      } catch (e) {
        return e;
      }
    })();
    expect(refused).toBeInstanceOf(ForeignQdiscError);
    expect(refused).toMatchObject({ code: 'PS_QDISC_FOREIGN', ifname: dev.ifname, kind: 'tbf', handle: '1:' });
    expect((refused as Error).message).toMatch(new RegExp(`^${dev.ifname} has a root qdisc portshaper did not install \\(tbf 1:\\)[^]*"qdisc: replace"`));
    expect(inA(() => removeHtbRoot(dev.ifindex, dev.ifname)), 'removeHtbRoot with a foreign root').toBe(false);
    expect(await tcQdiscs(), 'qdiscs after the refusal').toMatchObject([{ kind: 'tbf', handle: '1:', root: true }]);
    expect(inA(() => ensureHtbRoot(dev.ifindex, dev.ifname, { replace: true, directQlen: 64 }))).toEqual({ installed: true, replaced: tbf });
    expect(await tcQdiscs()).toMatchObject([{ kind: 'htb', handle: '5053:', root: true, options: { direct_qlen: 64 } }]);
  });

  it('removes its root and leaves the kernel default (noqueue) in its place', async () => {
    expect(inA(() => removeHtbRoot(dev.ifindex, dev.ifname)), 'remove our root').toBe(true);
    expect(inA(() => removeHtbRoot(dev.ifindex, dev.ifname)), 'remove it again').toBe(false);
    expect(inA(() => rootQdisc(dev.ifindex, dev.ifname))).toEqual({ kind: 'noqueue', handle: 0, builtin: true, ours: false });
    expect(await tcQdiscs()).toMatchObject([{ kind: 'noqueue', handle: '0:', root: true }]);
  });

  it('leaves a foreign root at our handle 5053: alone, reporting the kernel reason when asked to replace it', async () => {
    await run('tc', ['-n', topo.nsA, 'qdisc', 'add', 'dev', dev.ifname, 'root', 'handle', '5053:', 'tbf', 'rate', '1mbit', 'burst', '10k', 'latency', '50ms']);
    try {
      expect(inA(() => rootQdisc(dev.ifindex, dev.ifname))).toMatchObject({ kind: 'tbf', ours: false });
      expect(() => inA(() => ensureHtbRoot(dev.ifindex, dev.ifname, { replace: false }))).toThrow(ForeignQdiscError);
      expect(inA(() => removeHtbRoot(dev.ifindex, dev.ifname)), 'removeHtbRoot: the kernel checks the kind').toBe(false);
      // Same handle, other kind: tc_modify_qdisc takes it for a change of the existing qdisc and refuses.
      const replace = () => inA(() => ensureHtbRoot(dev.ifindex, dev.ifname, { replace: true }));
      expect(replace).toThrow(NetlinkError);
      expect(replace).toThrow(`install HTB root 5053: on ${dev.ifname} failed: EINVAL (errno 22): Invalid qdisc name`);
      expect(await tcQdiscs()).toMatchObject([{ kind: 'tbf', handle: '5053:' }]);
    } finally {
      await run('tc', ['-n', topo.nsA, 'qdisc', 'del', 'dev', dev.ifname, 'root']);
    }
  });

  it('treats a vanished device as nothing to read or remove', async () => {
    const gone = await addVeth('psgone');
    inA(() => {
      ensureHtbRoot(gone.ifindex, gone.ifname, { replace: false });
      setHtbClass(gone.ifindex, gone.ifname, { ...class7(1e6), minor: 3 });
    });
    await run('ip', ['-n', topo.nsA, 'link', 'del', gone.ifname]);
    inA(() => {
      expect(removeHtbRoot(gone.ifindex, gone.ifname), 'removeHtbRoot').toBe(false);
      expect(rootQdisc(gone.ifindex, gone.ifname), 'rootQdisc').toBeNull();
      expect(deleteHtbClass(gone.ifindex, gone.ifname, 3), 'deleteHtbClass').toBe(false);
      expect(listHtbClasses(gone.ifindex, gone.ifname).size, 'listHtbClasses').toBe(0);
      expect(() => setHtbClass(gone.ifindex, gone.ifname, { ...class7(1e6), minor: 3 }), 'setHtbClass').toThrow(/ENODEV/);
    });
  });

  it('measures the control-plane cost with 1000 classes on one device', async () => {
    const bulk = await addVeth('psbulk');
    const minors = Array.from({ length: 1000 }, (_, i) => i + 1);
    const timed = <T>(what: string, fn: () => T): T => {
      const start = performance.now();
      const result = inA(fn);
      console.info(`${what}: ${(performance.now() - start).toFixed(1)} ms`);
      return result;
    };
    timed('rootQdisc x1', () => rootQdisc(bulk.ifindex, bulk.ifname));
    timed('ensureHtbRoot x1', () => ensureHtbRoot(bulk.ifindex, bulk.ifname, { replace: false }));
    timed('setHtbClass x1000 (create)', () => minors.forEach((minor) => setHtbClass(bulk.ifindex, bulk.ifname, { minor, ...htbClassParams(10e6 + minor, 1e6, 10e6) })));
    timed('setHtbClass x1000 (change in place)', () => minors.forEach((minor) => setHtbClass(bulk.ifindex, bulk.ifname, { minor, ...htbClassParams(20e6 + minor, 1e6, 10e6) })));
    const classes = timed('listHtbClasses x1 (1000 classes)', () => listHtbClasses(bulk.ifindex, bulk.ifname));
    expect(classes.size, 'classes listed').toBe(1000);
    expect([...classes.values()].every((c) => c.leafKind === 'bfifo' && c.rateBytesPerSec === Math.round((20e6 + c.minor) / 8)), 'every class changed, with its bfifo').toBe(true);
    timed('deleteHtbClass x500', () => minors.slice(0, 500).forEach((minor) => deleteHtbClass(bulk.ifindex, bulk.ifname, minor)));
    expect(timed('removeHtbRoot x1 (500 classes)', () => removeHtbRoot(bulk.ifindex, bulk.ifname))).toBe(true);
  });
});
