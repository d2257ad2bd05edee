/** An in-memory ShaperService for route tests: no agent, no kernel. */
import type { ShaperService } from '../../../src/api/service.js';
import type { ApplyView, PolicyView, ReadyView, RuleBody, RulePatch, RuleView, StatsView } from '../../../src/api/schemas.js';
import { PolicyChangeError, RuleNotFoundError } from '../../../src/errors.js';
import { formatRate, parseRate } from '../../../src/policy/index.js';

const counters = { passedPackets: 10, passedBytes: 15_000, droppedPackets: 2, droppedBytes: 3000, overLimitPackets: 0, overLimitBytes: 0, markedPackets: 0, markedBytes: 0, synDrops: 0, newClients: 0 };
const observed = { bitsPerSecond: 8000, packetsPerSecond: 1, droppedBitsPerSecond: 0, droppedPacketsPerSecond: 0, windowSeconds: 5 };

/** A rule view as the fake builds it. */
export function fakeRule(name: string, port: number, rate = '10mbit'): RuleView {
  const bps = parseRate(rate);
  return {
    name, port, from: port, to: port, protocol: 'tcp', direction: 'ingress', side: 'local',
    rate: formatRate(bps), rateBitsPerSecond: bps, burstBytes: 375_000, burstNanoseconds: 300_000_000,
    mode: 'police', buckets: 'shared', counters: { ingress: counters }, observed: { ingress: observed },
  };
}

export class FakeService implements ShaperService {
  readonly settings = { listen: { host: '127.0.0.1', port: 9180 }, tokenFile: '/tmp/token', readsOpen: true };
  rules = new Map<string, RuleView>([['web', fakeRule('web', 80)]]);
  ready_: ReadyView = { ready: true, interfaces: [{ name: 'eth0', ifindex: 2, ingress: true, egress: true, registered: true }] };
  /** Set to make the next write throw this. */
  failWith: Error | undefined;
  policyText = 'interfaces:\n  - name: eth0 # uplink\nrules: []\n';
  replaced: string[] = [];

  clients(name: string, query: { top: number; by: 'bytes' | 'drops' }) {
    this.getRule(name);
    return { rule: name, clients: 1, added: 3, evicted: 2, by: query.by, top: [{ address: '198.18.0.9', direction: 'ingress' as const, passedPackets: 5, passedBytes: 7000, droppedPackets: 1, droppedBytes: 1400, idleSeconds: 0.5 }].slice(0, query.top) };
  }
  listRules(limit?: number): RuleView[] {
    return [...this.rules.values()].slice(0, limit);
  }
  getRule(name: string): RuleView {
    const r = this.rules.get(name);
    if (!r) throw new RuleNotFoundError(name);
    return r;
  }
  rulesForPort(port: number): RuleView[] {
    return this.listRules().filter((r) => r.from <= port && port <= r.to);
  }
  async putRule(name: string, body: RuleBody): Promise<{ created: boolean; rule: RuleView }> {
    this.fail();
    const port = Number(body.port);
    const other = this.listRules().find((r) => r.name !== name && r.from === port);
    if (other) throw new PolicyChangeError([{ field: 'port', reason: `overlaps rule "${other.name}"` }], true);
    const created = !this.rules.has(name);
    const rule = fakeRule(name, port, body.rate);
    this.rules.set(name, rule);
    return { created, rule };
  }
  async patchRule(name: string, patch: RulePatch): Promise<RuleView> {
    this.fail();
    const old = this.getRule(name);
    const rule = fakeRule(name, Number(patch.port ?? old.port), patch.rate ?? old.rate);
    this.rules.set(name, rule);
    return rule;
  }
  async deleteRule(name: string): Promise<void> {
    this.fail();
    this.getRule(name);
    this.rules.delete(name);
  }
  stats(): StatsView {
    const k = { packets: 1, bytes: 60 };
    return { interfaces: [{ interface: 'eth0', ifindex: 2, direction: 'ingress', nonIp: k, unparsed: k, fragment: k, unmatched: k, matched: k }] };
  }
  unmatchedTraffic() {
    return { counting: false, windowSeconds: 0, traffic: [] };
  }
  ready(): ReadyView {
    return this.ready_;
  }
  policy(): PolicyView & { text: string } {
    return { file: '/etc/portshaper/policy.yaml', sha256: 'ab', inForce: true, policy: { interfaces: [{ name: 'eth0' }], rules: [] }, text: this.policyText };
  }
  metricsState() {
    const totals = [{ direction: 'ingress' as const, passedPackets: 10 * this.rules.size, passedBytes: 15_000 * this.rules.size, droppedPackets: 2 * this.rules.size, droppedBytes: 3000 * this.rules.size }];
    return { source: '/etc/portshaper/policy.yaml', hash: 'ab', reloads: { applied: 1, rejected: 2, failed: 0 }, lastReloadSuccessful: false, maxRules: 200, ruleCount: this.rules.size, totals };
  }
  async replacePolicy(text: string): Promise<ApplyView> {
    this.fail();
    this.replaced.push(text);
    return { applied: true, rules: 0, ms: 1, warnings: [] };
  }
  private fail(): void {
    const err = this.failWith;
    this.failWith = undefined;
    if (err) throw err;
  }
}
