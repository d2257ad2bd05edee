/**
 * Step 3 of the policy pipeline: a ValidPolicy → the DesiredState the data
 * plane should hold. Pure and deterministic: the same policy always yields the
 * same, sorted output, whatever the order of its rules.
 */
import type {
  DesiredBucket,
  DesiredClientLimit,
  DesiredInterface,
  DesiredPortRange,
  DesiredState,
  Direction,
  Mode,
  Protocol,
  Side,
} from '../kernel/desired.js';
import { assignProfiles } from './profiles.js';
import type { PolicyRule, ValidPolicy } from './types.js';
import { DEFAULT_BURST, DEFAULT_ECN, eventLimit, parseDuration } from './units.js';

const DEFAULT_ECN_NS = parseDuration(DEFAULT_ECN);
const DEFAULT_BURST_NS = parseDuration(DEFAULT_BURST);
const NO_EVENTS = { costNs: 0, burstNs: 0 };

const DIRECTIONS: readonly Direction[] = ['ingress', 'egress'];
const PROTOCOLS: readonly Protocol[] = ['tcp', 'udp'];
const SIDES: readonly Side[] = ['local', 'remote'];

/** The buckets, port ranges and interfaces that enforce a validated policy. */
export function planPolicy(policy: ValidPolicy): DesiredState {
  const { profileOf, ruleSets } = assignProfiles(
    policy.interfaces.map((i) => i.name),
    policy.rules.map((r) => r.interfaces),
  );

  // Emitting rules by name, directions in enum order and ports ascending yields buckets already sorted.
  const buckets: DesiredBucket[] = [];
  for (const rule of [...policy.rules].sort((a, b) => compareText(a.name, b.name))) pushBuckets(buckets, rule);

  const ports: DesiredPortRange[] = [];
  ruleSets.forEach((rules, profile) => {
    for (const index of rules) {
      const rule = policy.rules[index];
      if (rule === undefined) continue;
      for (const direction of directionsOf(rule)) {
        for (const protocol of protocolsOf(rule)) {
          ports.push({
            profile,
            direction,
            protocol,
            side: rule.side,
            from: rule.from,
            to: rule.to,
            // protocol "any": the tcp and udp ranges lead to the same bucket, so they share one limit.
            bucket: bucketKey(rule, direction),
            perPort: rule.perPort,
          });
        }
      }
    }
  });
  ports.sort(comparePortRanges);

  const interfaces: DesiredInterface[] = policy.interfaces.map((iface, i) => {
    const profile = profileOf[i] ?? 0;
    const mine = ports.filter((r) => r.profile === profile);
    return {
      name: iface.name,
      profile,
      ingress: iface.ingress,
      egress: iface.egress,
      remote: {
        ingress: mine.some((r) => r.side === 'remote' && r.direction === 'ingress'),
        egress: mine.some((r) => r.side === 'remote' && r.direction === 'egress'),
      },
      shaped: iface.egress ? shapedKeys(mine, buckets) : [],
      replaceQdisc: iface.replaceQdisc,
      countUnmatched: iface.countUnmatched,
    };
  });

  return { buckets, ports, interfaces: interfaces.sort((a, b) => compareText(a.name, b.name)) };
}

/** The buckets of one rule, in plan order: directions in enum order, ports ascending. */
function pushBuckets(out: DesiredBucket[], rule: PolicyRule): void {
  for (const direction of directionsOf(rule)) {
    const shared = { rule: rule.name, direction, ...bucketBehaviour(rule, direction) };
    if (!rule.perPort) {
      out.push({ key: bucketKey(rule, direction), ...shared });
      continue;
    }
    for (let port = rule.from; port <= rule.to; port++) {
      out.push({ key: `${bucketKey(rule, direction)}/${port}`, ...shared, port });
    }
  }
}

/**
 * The plan after one rule's limits changed, from the plan before, at the cost
 * of that rule's buckets: when the change keeps the rule's name, ports,
 * protocol, direction, side, bucket split, interfaces and whether it shapes,
 * every bucket key and port range stays and only those buckets' values
 * change. Equal to planPolicy() of the new policy (a unit test checks it);
 * undefined for any other change (the caller plans in full).
 */
export function replanRule(previous: DesiredState, before: PolicyRule, after: PolicyRule): DesiredState | undefined {
  const same =
    before.name === after.name &&
    before.from === after.from &&
    before.to === after.to &&
    before.protocol === after.protocol &&
    before.direction === after.direction &&
    before.side === after.side &&
    before.perPort === after.perPort &&
    before.interfaces === undefined &&
    after.interfaces === undefined &&
    shapes(before) === shapes(after);
  if (!same) return undefined;
  const fresh: DesiredBucket[] = [];
  pushBuckets(fresh, after);
  const list = previous.buckets;
  const lo = firstBucketOf(list, after.name);
  for (let i = 0; i < fresh.length; i++) if (list[lo + i]?.key !== fresh[i]!.key) return undefined;
  const buckets = list.slice();
  for (let i = 0; i < fresh.length; i++) buckets[lo + i] = fresh[i]!;
  return { buckets, ports: previous.ports, interfaces: previous.interfaces };
}

/** Buckets are sorted by rule name: the index of the first of this rule's (binary search). */
function firstBucketOf(list: readonly DesiredBucket[], rule: string): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (compareText(list[mid]!.rule, rule) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The buckets of one rule in a plan, at the cost of a binary search and that rule's buckets. */
export function bucketsOfRule(desired: DesiredState, rule: string): DesiredBucket[] {
  const out: DesiredBucket[] = [];
  for (let i = firstBucketOf(desired.buckets, rule); desired.buckets[i]?.rule === rule; i++) out.push(desired.buckets[i]!);
  return out;
}

/** Whether the rule's egress bucket shapes (and so needs an HTB class and sits in an interface's shaped list). */
function shapes(rule: PolicyRule): boolean {
  return rule.mode === 'shape' && rule.rateBps !== 0;
}

/**
 * Mode, depth and ECN/horizon of one direction's bucket. shape means "shape
 * where there is a queue": egress; ingress has none, so it polices there. An
 * unlimited rule only counts, so it never needs a class.
 */
function bucketBehaviour(rule: PolicyRule, direction: Direction): Omit<DesiredBucket, 'key' | 'rule' | 'direction' | 'port'> {
  const mode: Mode = rule.mode === 'shape' && (direction === 'ingress' || rule.rateBps === 0) ? 'police' : rule.mode;
  const limits = { ...eventLimits(rule, direction), ...(clientLimits(rule, direction) ?? {}) };
  if (mode === 'shape') {
    return { rateBps: rule.rateBps, burstNs: rule.shapeBurstNs, mode, ecnNs: rule.ecnNs ?? DEFAULT_ECN_NS, horizonNs: rule.horizonNs, ...limits };
  }
  // Policing: ECN-capable packets get a band as deep as the burst past it unless ecn says otherwise.
  const ecnNs = mode === 'police' ? (rule.ecnNs ?? rule.burstNs) : 0;
  return { rateBps: rule.rateBps, burstNs: rule.burstNs, mode, ecnNs, horizonNs: 0, ...limits };
}

/**
 * Packet and connection limits of one direction's bucket: as deep as the
 * policing burst (300 ms when the rule has no bit rate), at least two
 * events. Connections are counted where their SYN arrives: ingress only.
 */
function eventLimits(rule: PolicyRule, direction: Direction): Pick<DesiredBucket, 'pktCostNs' | 'pktBurstNs' | 'synCostNs' | 'synBurstNs'> {
  const depth = rule.burstNs || DEFAULT_BURST_NS;
  const pkts = rule.pps ? eventLimit(rule.pps, depth) : NO_EVENTS;
  const syns = rule.connections && direction === 'ingress' ? eventLimit(rule.connections, depth) : NO_EVENTS;
  return { pktCostNs: pkts.costNs, pktBurstNs: pkts.burstNs, synCostNs: syns.costNs, synBurstNs: syns.burstNs };
}

/** The per-client limits of one direction's bucket, when the rule has any that apply there. */
function clientLimits(rule: PolicyRule, direction: Direction): { client: DesiredClientLimit } | undefined {
  const c = rule.client;
  if (!c) return undefined;
  const pkts = c.pps ? eventLimit(c.pps, c.burstNs) : NO_EVENTS;
  const syns = c.connections && direction === 'ingress' ? eventLimit(c.connections, c.burstNs) : NO_EVENTS;
  if (!c.rateBps && !pkts.costNs && !syns.costNs) return undefined;
  return {
    client: {
      rateBps: c.rateBps,
      burstNs: c.burstNs,
      ecnNs: c.burstNs,
      pktCostNs: pkts.costNs,
      pktBurstNs: pkts.burstNs,
      synCostNs: syns.costNs,
      synBurstNs: syns.burstNs,
      ipv6Prefix: c.ipv6Prefix,
    },
  };
}

/** Keys of the shaped buckets that egress port ranges of one profile lead to, sorted. */
function shapedKeys(ranges: DesiredPortRange[], buckets: DesiredBucket[]): string[] {
  const shaped = new Set(buckets.filter((b) => b.mode === 'shape').map((b) => b.key));
  const keys = new Set<string>();
  for (const r of ranges) {
    if (r.direction !== 'egress') continue;
    if (!r.perPort) {
      if (shaped.has(r.bucket)) keys.add(r.bucket);
      continue;
    }
    for (let p = r.from; p <= r.to; p++) if (shaped.has(`${r.bucket}/${p}`)) keys.add(`${r.bucket}/${p}`);
  }
  return [...keys].sort(compareText);
}

function bucketKey(rule: PolicyRule, direction: Direction): string {
  return `${rule.name}/${direction}`;
}

function directionsOf(rule: PolicyRule): readonly Direction[] {
  return rule.direction === 'both' ? DIRECTIONS : [rule.direction];
}

function protocolsOf(rule: PolicyRule): readonly Protocol[] {
  return rule.protocol === 'any' ? PROTOCOLS : [rule.protocol];
}

/** Orders ranges as the kernel's port table does: profile, direction, protocol, side, then port. */
function comparePortRanges(a: DesiredPortRange, b: DesiredPortRange): number {
  return (
    a.profile - b.profile ||
    DIRECTIONS.indexOf(a.direction) - DIRECTIONS.indexOf(b.direction) ||
    PROTOCOLS.indexOf(a.protocol) - PROTOCOLS.indexOf(b.protocol) ||
    SIDES.indexOf(a.side) - SIDES.indexOf(b.side) ||
    a.from - b.from
  );
}

/** Code-unit order: unlike localeCompare, the same on every machine. */
function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
