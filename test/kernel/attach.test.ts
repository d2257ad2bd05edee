/**
 * Attaching to tc clsact on a veth in a private namespace: our filter is
 * where we say, replaced atomically, removed alone; a foreign filter on the
 * same hooks survives attach, update and detach and keeps seeing traffic.
 * Pins are adopted by a second open, and refused when their layout differs.
 */
import { mkdtempSync, readdirSync, rmSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { applyDesired } from '../../src/kernel/apply.js';
import { readCounters } from '../../src/kernel/counters.js';
import { DataPlane } from '../../src/kernel/dataplane.js';
import { MAP_NAMES, removePins } from '../../src/kernel/pins.js';
import { TC_FILTER } from '../../src/kernel/tc.js';
import { psMeta, PS } from '../../src/kernel/layout.js';
import { inNetns } from '../../src/kernel/netns.js';
import { PinLayoutError } from '../../src/errors.js';
import { describeKernel } from '../helpers/env.js';
import { desiredFrom, testPinDir } from '../helpers/dataplane.js';
import { addForeignFilter, createTopology, foreignFilterPackets, nsExec, run, tcFilters, type ForeignFilter, type Topology } from '../helpers/net.js';

describeKernel('attach on tc clsact (veth in a private namespace)', () => {
  let topo: Topology;
  let dp: DataPlane;
  const pinDir = testPinDir('attach');
  let foreignIn: ForeignFilter;
  let foreignOut: ForeignFilter;

  const ours = async (hook: 'ingress' | 'egress') =>
    (await tcFilters(topo.nsB, topo.ifB, hook)).filter((f) => f.pref === TC_FILTER.priority && f.handle === TC_FILTER.handle);
  const ping = () => nsExec(topo.nsA, ['ping', '-c', '3', '-i', '0.05', '-W', '1', topo.ipB]);

  beforeAll(async () => {
    removePins(pinDir);
    topo = await createTopology('attach');
    // Someone else's filters: one before ours (pref 100), one after (pref 60000).
    foreignIn = await addForeignFilter(topo.nsB, topo.ifB, 'ingress', { pref: 100, handle: 7 });
    foreignOut = await addForeignFilter(topo.nsB, topo.ifB, 'egress', { pref: 60000, handle: 8 });
    dp = DataPlane.open({ pinDir });
  });
  afterAll(async () => {
    dp?.close();
    removePins(pinDir);
    await topo?.destroy();
  });

  it('attaches direct-action filters with our handle and priority on both hooks', async () => {
    inNetns(topo.nsB, () => {
      dp.setInterface(topo.ifindexB, 0);
      dp.attach(topo.ifindexB, topo.ifB, { ingress: true, egress: true });
    });
    for (const hook of ['ingress', 'egress'] as const) {
      const [f, ...extra] = await ours(hook);
      expect(extra, `one filter of ours on ${hook}`).toEqual([]);
      expect(f, `our filter on ${hook} of ${topo.ifB}`).toMatchObject({ kind: 'bpf', directAction: true, progName: `ps_${hook}` });
    }
  });

  it('lets foreign filters before and after ours keep seeing traffic', async () => {
    const [inBefore, outBefore] = [await foreignFilterPackets(foreignIn), await foreignFilterPackets(foreignOut)];
    await ping();
    expect(await foreignFilterPackets(foreignIn), 'foreign ingress filter (runs before ours)').toBeGreaterThanOrEqual(inBefore + 3);
    expect(await foreignFilterPackets(foreignOut), 'foreign egress filter (runs after ours: we return TC_ACT_UNSPEC)').toBeGreaterThanOrEqual(outBefore + 3);
  });

  it('replaces its program atomically when a new agent attaches; foreign filters stay', async () => {
    const before = (await ours('ingress'))[0]!.progId;
    const second = DataPlane.open({ pinDir });
    try {
      expect(second.adopted, 'second open adopts the pins').toBe(true);
      inNetns(topo.nsB, () => second.attach(topo.ifindexB, topo.ifB, { ingress: true, egress: true }));
    } finally {
      second.close();
    }
    const after = await ours('ingress');
    expect(after).toHaveLength(1);
    expect(after[0]!.progId).not.toBe(before);
    expect((await tcFilters(topo.nsB, topo.ifB, 'ingress')).some((f) => f.pref === 100)).toBe(true);
    expect((await tcFilters(topo.nsB, topo.ifB, 'egress')).some((f) => f.pref === 60000)).toBe(true);
  });

  it('keeps enforcing with the adopted maps after the loading process closed its handles', async () => {
    const plan = applyDesired(dp, desiredFrom([{ name: 'icmp-free', port: 9, rateBps: 0, burstNs: 0 }]));
    const slot = plan.slots.get('icmp-free/ingress')!;
    await nsExec(topo.nsA, ['bash', '-c', `echo x > /dev/udp/${topo.ipB}/9`]);
    expect(readCounters(dp, [slot]).get(slot)!.pass_pkts).toBe(1n);
  });

  it('detaches only its own filters: foreign filters and the clsact qdisc remain', async () => {
    inNetns(topo.nsB, () => dp.detach(topo.ifindexB, topo.ifB));
    expect(await ours('ingress')).toEqual([]);
    expect(await ours('egress')).toEqual([]);
    expect((await tcFilters(topo.nsB, topo.ifB, 'ingress')).map((f) => f.pref)).toEqual([100]);
    expect((await tcFilters(topo.nsB, topo.ifB, 'egress')).map((f) => f.pref)).toEqual([60000]);
    const before = await foreignFilterPackets(foreignIn);
    await ping();
    expect(await foreignFilterPackets(foreignIn)).toBeGreaterThanOrEqual(before + 3);
  });

  it('mounts a bpf filesystem when the pin directory is not on one', async () => {
    const base = mkdtempSync(join(tmpdir(), 'ps-bpffs-'));
    const dir = join(base, 'pins');
    try {
      const fresh = DataPlane.open({ pinDir: dir });
      fresh.close();
      const again = DataPlane.open({ pinDir: dir });
      again.close();
      expect(again.adopted, 'pins on the new mount are adopted').toBe(true);
      expect(statfsSync(dir).type, 'filesystem type of the pin directory').toBe(0xcafe4a11);
      expect(readdirSync(dir).filter((n) => n.startsWith('ps_')).sort(), 'every map pinned').toEqual([...MAP_NAMES].sort());
      removePins(dir);
    } finally {
      await run('umount', [dir], { allowFailure: true });
      rmSync(base, { recursive: true, force: true });
    }
  });

  it('refuses a pinned map whose value size is not ours, without reading it', async () => {
    const otherDir = testPinDir('attach-size');
    removePins(otherDir);
    await run('mkdir', ['-p', otherDir]);
    await run('bpftool', ['map', 'create', `${otherDir}/ps_meta`, 'type', 'array', 'key', '4', 'value', '8', 'entries', '1', 'name', 'ps_meta']);
    try {
      expect(() => DataPlane.open({ pinDir: otherDir })).toThrow(/ps_meta has 4-byte keys and 8-byte values/);
    } finally {
      removePins(otherDir);
    }
  });

  it('refuses pins of another layout version with a clear error', () => {
    const otherDir = testPinDir('attach-old');
    removePins(otherDir);
    const old = DataPlane.open({ pinDir: otherDir });
    try {
      old.maps.ps_meta.set(0, psMeta.encode({ ...old.meta(), layout_version: PS.PS_LAYOUT_VERSION + 1 }));
    } finally {
      old.close();
    }
    try {
      expect(() => DataPlane.open({ pinDir: otherDir })).toThrow(PinLayoutError);
      expect(() => DataPlane.open({ pinDir: otherDir })).toThrow(new RegExp(`have layout ${PS.PS_LAYOUT_VERSION + 1}; this build uses layout ${PS.PS_LAYOUT_VERSION}`));
    } finally {
      removePins(otherDir);
    }
  });
});
