/**
 * Finds rules that claim the same port: the data plane maps each (profile,
 * direction, protocol, side, port) to exactly one bucket, so two rules may
 * not both name it.
 */
import type { Direction, Protocol, Side } from '../kernel/desired.js';

/** The ports a rule claims. */
export interface PortClaim {
  from: number;
  to: number;
  protocols: readonly Protocol[];
  directions: readonly Direction[];
  side: Side;
}

/** A rule that claims a port an earlier rule already claims. */
export interface Overlap {
  /** Index of the later rule. */
  rule: number;
  /** Index of the earliest rule it overlaps. */
  first: number;
  /** The lowest port both claim, and where. */
  port: number;
  protocol: Protocol;
  direction: Direction;
  side: Side;
  profile: number;
}

const PORTS = 65536;
const DIRECTIONS: readonly Direction[] = ['ingress', 'egress'];
const PROTOCOLS: readonly Protocol[] = ['tcp', 'udp'];
const SIDES: readonly Side[] = ['local', 'remote'];
const TABLES = DIRECTIONS.length * PROTOCOLS.length * SIDES.length;

/**
 * For each rule that overlaps an earlier one within some profile, the earliest
 * such rule. ruleSets[p] lists the claims (by index, ascending) of profile p;
 * an undefined claim (a rule with errors) claims nothing.
 * Cost: one pass over every claimed port of every profile, whatever the number of rules.
 */
export function findOverlaps(
  claims: readonly (PortClaim | undefined)[],
  ruleSets: readonly (readonly number[])[]): Overlap[] {
  const found = new Map<number, Overlap>();
  // owners[table << 16 | port]: 1 + index of the first rule claiming the port; 0 = free. A table of every
  // port (2 MiB) for large policies; a map when few ports are claimed (one rule validated alone for an API
  // write must not pay for clearing 2 MiB).
  let cells = 0;
  for (const claim of claims) if (claim) cells += (claim.to - claim.from + 1) * claim.directions.length * claim.protocols.length;
  const owners = cells > 4096 ? denseOwners() : sparseOwners();
  ruleSets.forEach((rules, profile) => {
    owners.clear();
    for (const rule of rules) {
      const claim = claims[rule];
      if (claim === undefined) continue;
      for (const direction of claim.directions) {
        for (const protocol of claim.protocols) {
          const base = tableBase(direction, protocol, claim.side);
          for (let port = claim.from; port <= claim.to; port++) {
            const owner = owners.get(base + port) - 1;
            if (owner < 0) {
              owners.set(base + port, rule + 1);
              continue;
            }
            const known = found.get(rule);
            if (known === undefined || owner < known.first || (owner === known.first && port < known.port)) {
              found.set(rule, { rule, first: owner, port, protocol, direction, side: claim.side, profile });
            }
          }
        }
      }
    }
  });
  return [...found.values()].sort((a, b) => a.rule - b.rule);
}

/** Cells of the (direction, protocol, side, port) tables: an owner table of every port holds this many. */
export const PORT_CELLS = TABLES * PORTS;

/** The cell of port 0 of a (direction, protocol, side) table; add the port. */
export function tableBase(direction: Direction, protocol: Protocol, side: Side): number {
  return tableOf(direction, protocol, side) * PORTS;
}

function tableOf(direction: Direction, protocol: Protocol, side: Side): number {
  return (DIRECTIONS.indexOf(direction) * PROTOCOLS.length + PROTOCOLS.indexOf(protocol)) * SIDES.length + SIDES.indexOf(side);
}

/** Who claims each port cell: 1 + rule index, 0 when free. */
interface Owners {
  get(cell: number): number;
  set(cell: number, owner: number): void;
  clear(): void;
}

function denseOwners(): Owners {
  const table = new Int32Array(PORT_CELLS);
  return { get: (cell) => table[cell]!, set: (cell, owner) => void (table[cell] = owner), clear: () => table.fill(0) };
}

function sparseOwners(): Owners {
  const cells = new Map<number, number>();
  return { get: (cell) => cells.get(cell) ?? 0, set: (cell, owner) => void cells.set(cell, owner), clear: () => cells.clear() };
}
