import { describe, expect, it } from 'vitest';
import { clientsTable } from '../../src/cli/clients.js';

describe('portshaper clients: the table', () => {
  it('says how many clients, added and evicted, then one line per client', () => {
    const text = clientsTable({
      rule: 'api',
      clients: 2,
      added: 5,
      evicted: 3,
      by: 'drops',
      top: [
        { address: '198.18.0.3', direction: 'ingress', passedPackets: 10, passedBytes: 14_420, droppedPackets: 90, droppedBytes: 129_780, idleSeconds: 0.04 },
        { address: 'fd00:0:0:1::', direction: 'ingress', passedPackets: 3, passedBytes: 950, droppedPackets: 0, droppedBytes: 0, idleSeconds: 12 },
      ],
    });
    expect(text.split('\n')).toEqual([
      'api: 2 clients in the table, 5 added, 3 evicted (table full); top 2 by drops',
      'CLIENT        DIR      PASSED   PASSED PKTS  DROPPED PKTS  IDLE',
      '198.18.0.3    ingress  14.4 kB  10           90            0.0s',
      'fd00:0:0:1::  ingress  950 B    3            0             12.0s',
      '',
    ]);
  });
});
