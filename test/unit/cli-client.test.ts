/**
 * The CLI's API client over plain HTTP against a local server (no agent):
 * method, path, token and JSON body as sent; an unreachable agent and an
 * unreadable CA file explained. HTTPS with a CA is covered end to end by
 * test/e2e/tls.test.ts.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/cli/client.js';
import { ApiUnreachable, UsageError } from '../../src/errors.js';

describe('CLI API client', () => {
  let server: Server;
  let base: string;
  let dir: string;
  const seen: { method?: string; url?: string; authorization?: string; contentType?: string; body: string }[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ps-cli-client-'));
    server = createServer((req: IncomingMessage, res) => {
      let body = '';
      req.setEncoding('utf8').on('data', (d: string) => (body += d));
      req.on('end', () => {
        seen.push({ method: req.method, url: req.url, authorization: req.headers.authorization, contentType: req.headers['content-type'], body });
        if (req.method === 'DELETE') {
          res.writeHead(204).end();
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  it('sends the method, path, bearer token and JSON body; parses the answer, an empty one as undefined', async () => {
    const token = join(dir, 'token');
    writeFileSync(token, 'abc\n');
    const client = ApiClient.fromOptions({ api: `${base}/`, 'token-file': token }, {});
    const res = await client.request<{ ok: boolean }>('PATCH', '/v1/rules/web', { rate: '20mbit' });
    expect(res).toEqual({ status: 200, body: { ok: true } });
    expect(seen.at(-1)).toEqual({ method: 'PATCH', url: '/v1/rules/web', authorization: 'Bearer abc', contentType: 'application/json', body: '{"rate":"20mbit"}' });
    expect(await client.request('DELETE', '/v1/rules/web')).toEqual({ status: 204, body: undefined });
  });

  it('an agent that does not answer is ApiUnreachable with the address and the errno', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise((resolve) => closed.close(resolve));
    const err = await new ApiClient(url, undefined).request('GET', '/v1/rules').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiUnreachable);
    expect((err as Error).message).toBe(`cannot reach the agent's API at ${url} (ECONNREFUSED); is the agent running? check --api or api.listen in the policy`);
  });

  it('--ca and PORTSHAPER_CA must name a readable PEM certificate', () => {
    const missing = join(dir, 'absent.pem');
    expect(() => ApiClient.fromOptions({ api: base, ca: missing }, {})).toThrow(new UsageError(`cannot read --ca ${missing}: ENOENT`));
    expect(() => ApiClient.fromOptions({ api: base }, { PORTSHAPER_CA: missing })).toThrow(`cannot read PORTSHAPER_CA ${missing}: ENOENT`);
    const notPem = join(dir, 'key.der');
    writeFileSync(notPem, Buffer.from([0x30, 0x82]));
    expect(() => ApiClient.fromOptions({ api: base, ca: notPem }, {})).toThrow(/holds no PEM certificate/);
  });
});
