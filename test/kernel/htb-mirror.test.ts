/**
 * Applies write only the HTB classes that changed (diffed against what the
 * last apply installed, not dumped each time), and stay right when our root
 * is deleted behind our back, when rules go, and across a restart (a new
 * controller adopts the classes with one dump).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeKernel } from '../helpers/env.js';
import { PolicyHarness, testPinDir } from '../helpers/dataplane.js';
import { createTopology, htbClasses, run, type Topology } from '../helpers/net.js';

const rules = (first: string, count = 3) =>
  Array.from({ length: count }, (_, i) => `{ name: r${i}, port: ${5400 + i}, protocol: udp, direction: egress, rate: ${i === 0 ? first : '10mbit'} }`);

describeKernel('HTB classes kept by diff, not by a dump at every apply', () => {
  let topo: Topology;
  let shaper: PolicyHarness;
  const classes = async () => new Map(await htbClasses(topo.nsB, topo.ifB));

  beforeAll(async () => {
    topo = await createTopology('htbmirror');
    shaper = new PolicyHarness(topo.nsB, topo.ifB, testPinDir('htbmirror'));
  });
  afterAll(async () => {
    shaper?.close();
    await topo?.destroy();
  });

  it('changes a rate in place, puts every class back after the root was deleted, prunes removed rules, and adopts after a restart', async () => {
    shaper.apply(rules('10mbit'));
    expect((await classes()).size, 'three classes installed').toBe(3);

    shaper.apply(rules('20mbit'));
    expect([...(await classes()).values()].sort(), 'the changed class has its new rate').toEqual(['10Mbit', '10Mbit', '20Mbit']);

    await run('tc', ['-n', topo.nsB, 'qdisc', 'del', 'dev', topo.ifB, 'root']);
    expect((await classes()).size, 'root deleted behind our back').toBe(0);
    shaper.apply(rules('30mbit'));
    expect([...(await classes()).values()].sort(), 'every class back under a new root').toEqual(['10Mbit', '10Mbit', '30Mbit']);

    shaper.apply(rules('30mbit', 2));
    expect((await classes()).size, 'the removed rule\'s class pruned').toBe(2);

    // A new controller on the same pins (an agent restart) knows nothing yet: it dumps once and converges.
    await run('tc', ['-n', topo.nsB, 'class', 'change', 'dev', topo.ifB, 'parent', '5053:', 'classid', [...(await classes()).keys()][0]!, 'htb', 'rate', '1mbit']);
    const restarted = new PolicyHarness(topo.nsB, topo.ifB, testPinDir('htbmirror'), { keepPins: true });
    try {
      restarted.apply(rules('30mbit', 2));
      expect([...(await classes()).values()].sort(), 'a class changed behind our back is corrected by the adopting dump').toEqual(['10Mbit', '30Mbit']);
    } finally {
      restarted.dp.close();
    }
  });
});
