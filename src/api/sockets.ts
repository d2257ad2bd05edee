/**
 * Local sockets bound to one port (GET /v1/ports/{port}, and the API's
 * "address in use" message), from the socket table of socket-table.ts.
 */
import type { Listener } from './schemas.js';
import { ownersOf, readListeningSockets } from './socket-table.js';

/** TCP sockets listening and unconnected UDP sockets bound on port, with their process where readable. */
export function listenersOn(port: number, protocols: readonly ('tcp' | 'udp')[] = ['tcp', 'udp']): Listener[] {
  const found = readListeningSockets().filter((s) => s.port === port && protocols.includes(s.protocol));
  const owners = ownersOf(new Set(found.map((s) => s.inode)));
  return found.map(({ protocol, address, inode }) => {
    const owner = owners.get(inode);
    return { protocol, address, port, inode, ...(owner ? { process: { pid: owner.pid, command: owner.command } } : {}) };
  });
}
