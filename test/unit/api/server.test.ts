/** Binding failures explained, and listeners found in /proc/net with their process. */
import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { explainBindError } from '../../../src/api/server.js';
import { listenersOn } from '../../../src/api/sockets.js';

describe('API binding', () => {
  let server: Server | undefined;
  afterEach(() => server?.close());

  const listen = () =>
    new Promise<number>((resolve) => {
      server = createServer().listen(0, '127.0.0.1', () => resolve((server!.address() as { port: number }).port));
    });

  it('finds a listening socket and its process in /proc', async () => {
    const port = await listen();
    const found = listenersOn(port);
    expect(found).toEqual([{ protocol: 'tcp', address: '127.0.0.1', port, inode: expect.any(Number), process: { pid: process.pid, command: expect.any(String) } }]);
  });

  it('explains "address already in use" with the process holding it', async () => {
    const port = await listen();
    const err = explainBindError(Object.assign(new Error('listen EADDRINUSE'), { code: 'EADDRINUSE' }), '127.0.0.1', port);
    expect(err.message).toContain(`cannot listen on 127.0.0.1:${port}: address already in use; held by `);
    expect(err.message).toContain(`(pid ${process.pid}) on 127.0.0.1`);
  });

  it('explains a privileged port', () => {
    const err = explainBindError(Object.assign(new Error('listen EACCES'), { code: 'EACCES' }), '0.0.0.0', 80);
    expect(err.message).toContain('port 80 < 1024 needs root or CAP_NET_BIND_SERVICE');
    expect(err.message).toContain('choose a port ≥ 1024');
  });
});
