/**
 * An HTTP client of the agent's API that lives inside the agent's network
 * namespace. The API listens on 127.0.0.1 there, and this process cannot
 * open a socket in another namespace (Node creates the socket a tick after
 * connect() is called, so a synchronous setns around it does not work): one
 * small node process is started there with nsenter and kept for the whole
 * run, so no request pays a process start. It takes JSON commands on stdin
 * and answers on stdout; requests go over keep-alive agents (node:http), and
 * every timestamp it reports is performance.timeOrigin + performance.now(),
 * comparable with the same clock here.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { nsEnterArgv } from '../../test/helpers/net.js';
import { onCleanup } from './cleanup.js';

/** One request. */
export interface ApiRequest {
  method: string;
  path: string;
  /** JSON-encoded unless a string. */
  body?: unknown;
  contentType?: string;
  /** Send the bearer token (writes). */
  token?: boolean;
  /** Return the first 4 KiB of the body (otherwise only its size). */
  keepBody?: boolean;
}

/** One response, timed inside the namespace. */
export interface ApiResponse {
  /** HTTP status, or 0 when there was no response (the reason is in body). */
  status: number;
  /** Round trip, request start to last body byte. */
  ms: number;
  /** When the request started (timeOrigin + now, ms). */
  at: number;
  bytes: number;
  body: string;
}

/** What a closed-loop load run returns. */
export interface LoadResult {
  seconds: number;
  /** Latencies of the successful (2xx) requests, ms. */
  ms: number[];
  errors: number;
  firstError?: string;
}

// Runs inside the namespace as an ES module (plain JavaScript: it is given to
// `node -e`, not compiled). Commands: {id, op: 'token' | 'one' | 'ready' | 'load', ...}.
const SCRIPT = `
import http from 'node:http';
import readline from 'node:readline';
const base = new URL(process.env.PS_BENCH_API);
let token = '';
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const single = new http.Agent({ keepAlive: true, maxSockets: 1 });
function request(agent, q, timeoutMs) {
  return new Promise((resolve) => {
    const headers = {};
    if (q.token) headers.authorization = 'Bearer ' + token;
    let body;
    if (q.body !== undefined) {
      body = Buffer.from(typeof q.body === 'string' ? q.body : JSON.stringify(q.body));
      headers['content-type'] = q.contentType ?? 'application/json';
      headers['content-length'] = body.length;
    }
    const t0 = performance.now();
    const at = performance.timeOrigin + t0;
    const done = (status, bytes, text) => resolve({ status, ms: performance.now() - t0, at, bytes, body: text });
    const req = http.request({ host: base.hostname, port: base.port, path: q.path, method: q.method, headers, agent, timeout: timeoutMs }, (res) => {
      const kept = [];
      let bytes = 0;
      res.on('data', (c) => {
        bytes += c.length;
        if (q.keepBody && bytes - c.length < 4096) kept.push(c);
      });
      res.on('end', () => done(res.statusCode, bytes, Buffer.concat(kept).toString('utf8').slice(0, 4096)));
      res.on('error', (e) => done(0, bytes, String(e.message ?? e)));
    });
    // The socket timeout fires after timeoutMs without a byte: a bound on a stuck request.
    req.on('timeout', () => req.destroy(new Error('no answer within ' + timeoutMs + ' ms')));
    req.on('error', (e) => done(0, 0, String(e.message ?? e)));
    req.end(body);
  });
}
const ops = {
  async token(c) { token = c.token; return {}; },
  async one(c) { return request(single, c.request, c.timeoutMs); },
  // Poll until a 200; refused connections (API not listening yet) and 503s are retried.
  async ready(c) {
    const until = performance.now() + c.timeoutMs;
    let last = { status: 0, body: 'never asked' };
    while (performance.now() < until) {
      const r = await request(single, { method: 'GET', path: c.path }, Math.max(1, until - performance.now()));
      if (r.status === 200) return { ...r, end: r.at + r.ms };
      last = r;
      await sleep(c.intervalMs);
    }
    return { ...last, end: 0 };
  },
  // Closed loop: concurrency workers, each sending its next request when the last one answered, until durationMs.
  async load(c) {
    const agent = new http.Agent({ keepAlive: true, maxSockets: c.concurrency });
    const until = performance.now() + c.durationMs;
    const ms = [];
    let errors = 0, firstError, next = 0;
    const t0 = performance.now();
    const worker = async () => {
      while (performance.now() < until) {
        const q = c.requests[next++ % c.requests.length];
        const r = await request(agent, q, c.timeoutMs);
        if (r.status >= 200 && r.status < 300) ms.push(r.ms);
        else {
          errors++;
          firstError ??= r.status + ' ' + r.body.slice(0, 200);
        }
      }
    };
    await Promise.all(Array.from({ length: c.concurrency }, worker));
    agent.destroy();
    return { seconds: (performance.now() - t0) / 1000, ms, errors, firstError };
  },
};
for await (const line of readline.createInterface({ input: process.stdin })) {
  const c = JSON.parse(line);
  ops[c.op](c).then(
    (r) => process.stdout.write(JSON.stringify({ id: c.id, ok: r }) + '\\n'),
    (e) => process.stdout.write(JSON.stringify({ id: c.id, err: String(e?.stack ?? e) }) + '\\n'),
  );
}
`;

/** The wall clock with sub-millisecond resolution that the client reports in. */
export const clockMs = (): number => performance.timeOrigin + performance.now();

/** The client process in one namespace. */
export class ApiClient {
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private readonly stderr: string[] = [];
  private readonly undo: () => void;
  private closed = false;

  private constructor(private readonly child: ChildProcess) {
    let buf = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const msg = JSON.parse(buf.slice(0, nl)) as { id: number; ok?: unknown; err?: string };
        buf = buf.slice(nl + 1);
        const p = this.pending.get(msg.id);
        if (!p) continue;
        this.pending.delete(msg.id);
        clearTimeout(p.timer);
        if (msg.err !== undefined) p.reject(new Error(`API client: ${msg.err}`));
        else p.resolve(msg.ok);
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => this.stderr.push(d));
    child.on('close', (code, signal) => {
      this.closed = true;
      for (const p of this.pending.values()) {
        clearTimeout(p.timer);
        p.reject(new Error(`API client exited (${code ?? signal}): ${this.stderr.join('').slice(-500)}`));
      }
      this.pending.clear();
    });
    this.undo = onCleanup('stop the API client', () => child.kill('SIGKILL'));
  }

  /** Start the client in namespace ns, for the API at base (http://host:port). */
  static start(ns: string, base: string): ApiClient {
    const argv = nsEnterArgv(ns, [process.execPath, '--input-type=module', '-e', SCRIPT]);
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, PS_BENCH_API: base } });
    return new ApiClient(child);
  }

  /** Send a command; rejects when the client has not answered within timeoutMs (plus slack for the pipe). */
  private command<T>(op: string, args: Record<string, unknown>, timeoutMs: number): Promise<T> {
    if (this.closed) return Promise.reject(new Error(`API client is not running: ${this.stderr.join('').slice(-500)}`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`API client: no answer to ${op} within ${timeoutMs + 5000} ms`));
      }, timeoutMs + 5000);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.child.stdin!.write(JSON.stringify({ id, op, ...args }) + '\n');
    });
  }

  /** The bearer token for requests with `token: true`. */
  setToken(token: string): Promise<void> {
    return this.command('token', { token }, 5000);
  }

  /** One request on a keep-alive connection. */
  request(request: ApiRequest, timeoutMs: number): Promise<ApiResponse> {
    return this.command('one', { request, timeoutMs }, timeoutMs);
  }

  /** Poll path every intervalMs until it answers 200; `end` is when that answer completed (0: never). */
  waitReady(path: string, timeoutMs: number, intervalMs = 10): Promise<ApiResponse & { end: number }> {
    return this.command('ready', { path, timeoutMs, intervalMs }, timeoutMs);
  }

  /** Closed-loop load: `concurrency` workers cycling through requests for durationMs. */
  load(requests: ApiRequest[], concurrency: number, durationMs: number, timeoutMs: number): Promise<LoadResult> {
    return this.command('load', { requests, concurrency, durationMs, timeoutMs }, durationMs + timeoutMs);
  }

  close(): void {
    this.child.stdin!.end();
    this.child.kill('SIGKILL');
    this.undo();
  }
}
