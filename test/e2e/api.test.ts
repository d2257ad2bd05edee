/**
 * The REST API of the real agent, inside a test namespace, while iperf3
 * sends: a PUT is in force in the kernel before its response (checked in the
 * pinned maps, not through the agent) and the delivered rate follows; GET
 * counters match the pinned maps; 200 concurrent writes converge (file,
 * kernel and GET agree); /metrics passes promtool; an API change survives a
 * restart with the file's comments kept.
 *
 * The API listens on 127.0.0.1 inside the namespace, so requests are made by
 * a small node process started there with nsenter (fetch, bounded concurrency).
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { removePins } from '../../src/kernel/pins.js';
import { AgentProcess, CLI, PinnedReader, PolicyDir, endAgentTest } from '../helpers/agent.js';
import { testPinDir } from '../helpers/dataplane.js';
import { describeKernel, isCI, which } from '../helpers/env.js';
import { createTopology, nsEnterArgv, run, type Topology } from '../helpers/net.js';
import { runIperf, udpWireBitsPerSecond, udpWireBytes } from '../helpers/traffic.js';

const MBIT = 1_000_000;
const LEN = 1400;
const API = 'http://127.0.0.1:9180';

/** One request for the in-namespace client. */
interface Request {
  method: string;
  path: string;
  body?: unknown;
  token?: boolean;
  contentType?: string;
}
interface Response {
  status: number;
  body: string;
  ms: number;
  /** Wall-clock ms (performance.timeOrigin based) when the request started. */
  at: number;
}

// Runs inside the namespace: reads {requests, concurrency, token} on stdin, prints the responses.
const CLIENT = `
let input = '';
for await (const chunk of process.stdin) input += chunk;
const { requests, concurrency, token, base, durationMs } = JSON.parse(input);
// With durationMs: cycle through the requests until the time is up; print only counts and latencies.
const until = durationMs ? performance.now() + durationMs : 0;
const out = [];
let next = 0;
async function worker() {
  while (durationMs ? performance.now() < until : next < requests.length) {
    const i = next++;
    const q = requests[i % requests.length];
    const headers = {};
    if (q.token) headers.authorization = 'Bearer ' + token;
    let body;
    if (q.body !== undefined) {
      headers['content-type'] = q.contentType ?? 'application/json';
      body = typeof q.body === 'string' ? q.body : JSON.stringify(q.body);
    }
    const t0 = performance.now();
    const at = performance.timeOrigin + t0;
    try {
      const res = await fetch(base + q.path, { method: q.method, headers, body });
      const text = await res.text();
      out[i] = { status: res.status, body: durationMs ? '' : text, ms: performance.now() - t0, at };
    } catch (e) {
      out[i] = { status: 0, body: String(e), ms: performance.now() - t0, at };
    }
  }
}
await Promise.all(Array.from({ length: concurrency }, worker));
process.stdout.write(JSON.stringify(out));
`;

describeKernel(
  'REST API of the real agent on a veth (PUT under traffic, counters, concurrent writes, metrics, restart)',
  () => {
    let topo: Topology;
    let agent: AgentProcess;
    let reader: PinnedReader;
    const pinDir = testPinDir('api');
    const policy = new PolicyDir();
    const tokenFile = join(policy.dir, 'token');

    /** Send requests from inside nsB, `concurrency` at a time. */
    const call = (requests: Request[], concurrency = 1, durationMs?: number): Promise<Response[]> =>
      new Promise((resolve, reject) => {
        const argv = nsEnterArgv(topo.nsB, [process.execPath, '--input-type=module', '-e', CLIENT]);
        const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
        child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
        child.on('close', (code) => (code === 0 ? resolve(JSON.parse(stdout) as Response[]) : reject(new Error(`API client exited ${code}: ${stderr}`))));
        const token = readFileSync(tokenFile, 'utf8').trim();
        child.stdin.end(JSON.stringify({ requests, concurrency, token, base: API, durationMs }));
      });
    const one = async (request: Request): Promise<{ status: number; json: any; body: string }> => {
      const [r] = await call([request]);
      let json: unknown;
      try {
        json = JSON.parse(r!.body);
      } catch {
        json = undefined;
      }
      return { status: r!.status, json, body: r!.body };
    };
    const udp = (bitrate: number, seconds = 3) =>
      runIperf({ nsClient: topo.nsA, nsServer: topo.nsB, serverIp: topo.ipB, port: 5201, udp: true, bitrate, length: LEN, seconds, intervalSeconds: 0.5 });

    beforeAll(async () => {
      removePins(pinDir);
      topo = await createTopology('apie');
      policy.write(`# API e2e policy: this comment must survive API writes
pinDir: ${pinDir}
interfaces:
  - name: ${topo.ifB}
api:
  listen: 127.0.0.1:9180
  tokenFile: ${tokenFile}
rules:
  - name: udp   # the iperf3 port
    port: 5201
    protocol: udp
    direction: ingress
    rate: 100mbit
    burst: 10ms
`);
      agent = AgentProcess.start(topo.nsB, policy.path);
      await agent.waitFor((r) => r.msg === 'API listening');
      reader = new PinnedReader(pinDir);
    });
    afterAll(() => endAgentTest({ agent, reader, topo, pinDir, policy }));

    it('creates the token file (0600), answers health and readiness, refuses writes without the token', async () => {
      expect(readFileSync(tokenFile, 'utf8').trim()).toMatch(/^[0-9a-f]{64}$/);
      expect((await import('node:fs')).statSync(tokenFile).mode & 0o777, 'token file mode').toBe(0o600);
      expect((await one({ method: 'GET', path: '/healthz' })).status).toBe(200);
      const ready = await one({ method: 'GET', path: '/readyz' });
      expect(ready.status, ready.body).toBe(200);
      expect(ready.json.interfaces[0]).toMatchObject({ name: topo.ifB, ingress: true, egress: true, registered: true });
      const denied = await one({ method: 'PUT', path: '/v1/rules/udp', body: { port: 5201, rate: '1mbit' } });
      expect(denied.status).toBe(401);
      expect(reader.rule(reader.slotOf('udp/ingress')!).rate_bps, 'refused write changed nothing').toBe(100_000_000n);
    });

    it('PUT a lower rate during traffic: in force in the kernel before the response, delivered rate follows', async () => {
      const slot = reader.slotOf('udp/ingress')!;
      const idle = reader.counts(slot).pass_pkts;
      // 6 s: room for at least four half seconds after the PUT even when a busy machine slows it.
      const traffic = udp(200 * MBIT, 6);
      // Time zero is when packets start to pass (iperf3's clock starts about then, after its server is up).
      while (reader.counts(slot).pass_pkts === idle) await new Promise((r) => setTimeout(r, 5));
      const zero = performance.now();
      await new Promise((r) => setTimeout(r, 1000));
      const put = await one({ method: 'PUT', path: '/v1/rules/udp', token: true, body: { port: 5201, protocol: 'udp', direction: 'ingress', rate: '30mbit', burst: '10ms' } });
      const putAt = (performance.now() - zero) / 1000;
      const rateRightAfter = reader.rule(slot).rate_bps;
      expect(put.status, put.body).toBe(200);
      expect(rateRightAfter, 'ps_rules holds the new rate when the response arrives').toBe(30_000_000n);
      expect(reader.slotOf('udp/ingress'), 'same bucket (credit and counters kept)').toBe(slot);
      const r = await traffic;
      // Every full half second after the response is at the new rate (the last interval may be cut short).
      const after = r.intervals.filter((i) => i.start >= putAt + 0.1).slice(0, -1);
      expect(after.length, `intervals after the PUT at ${putAt.toFixed(2)} s`).toBeGreaterThanOrEqual(2);
      const last = after.map((i) => ((i.bytes / LEN) * udpWireBytes(LEN) * 8) / (i.end - i.start) / (30 * MBIT));
      expect(Math.max(...last), `delivered/30mbit per 0.5 s: ${last.map((x) => x.toFixed(3)).join(' ')}`).toBeLessThan(1.06);
      expect(Math.min(...last)).toBeGreaterThan(0.9);
      const text = readFileSync(policy.path, 'utf8');
      expect(text, 'persisted with comments').toContain('# API e2e policy: this comment must survive API writes');
      expect(text).toContain('# the iperf3 port');
      expect(parse(text).rules[0].rate).toBe('30mbit');
    });

    it('counters in GET /v1/rules grow with traffic and equal the pinned maps', async () => {
      const slot = reader.slotOf('udp/ingress')!;
      const before = (await one({ method: 'GET', path: '/v1/rules' })).json.rules[0].counters.ingress;
      const r = await udp(60 * MBIT, 2);
      expect(udpWireBitsPerSecond(r) / (30 * MBIT)).toBeLessThan(1.05);
      await new Promise((res) => setTimeout(res, 200));
      const after = (await one({ method: 'GET', path: '/v1/rules/udp' })).json;
      const pinned = reader.counts(slot);
      expect(after.counters.ingress.passedPackets).toBeGreaterThan(before.passedPackets);
      expect(after.counters.ingress.droppedPackets).toBeGreaterThan(before.droppedPackets);
      expect(after.counters.ingress).toMatchObject({
        passedPackets: Number(pinned.pass_pkts),
        passedBytes: Number(pinned.pass_bytes),
        droppedPackets: Number(pinned.drop_pkts),
        droppedBytes: Number(pinned.drop_bytes),
      });
      const port = await one({ method: 'GET', path: '/v1/ports/5201' });
      expect(port.json.rules.map((x: { name: string }) => x.name)).toEqual(['udp']);
    });

    it('200 concurrent writes converge: the file, the kernel and GET agree', async () => {
      const names = Array.from({ length: 40 }, (_, i) => `c${i}`);
      const requests: Request[] = Array.from({ length: 200 }, (_, i) => {
        const k = i % names.length;
        return { method: 'PUT', path: `/v1/rules/${names[k]}`, token: true, body: { port: 7000 + k, protocol: 'tcp', direction: 'egress', rate: `${1 + ((i * 7) % 90)}mbit` } };
      });
      const mark = agent.logs.length;
      const t0 = performance.now();
      const responses = await call(requests, 200);
      const applies = agent.logs.slice(mark).filter((r) => r.msg === 'policy applied').length;
      const rtt = responses.map((r) => r.ms).sort((a, b) => a - b);
      console.info(`200 concurrent PUTs: ${(performance.now() - t0).toFixed(0)} ms with the client's start, applied in ${applies} batches; response times ${rtt[0]!.toFixed(0)}..${rtt[199]!.toFixed(0)} ms`);
      expect(responses.filter((r) => r.status !== 200 && r.status !== 201).map((r) => r.body)).toEqual([]);
      const got = (await one({ method: 'GET', path: '/v1/rules' })).json.rules as { name: string; rateBitsPerSecond: number }[];
      const file = parse(readFileSync(policy.path, 'utf8')) as { rules: { name: string; rate: string }[] };
      for (const name of names) {
        const viaGet = got.find((r) => r.name === name)?.rateBitsPerSecond;
        const inFile = file.rules.find((r) => r.name === name)?.rate;
        const slot = reader.slotOf(`${name}/egress`);
        expect(slot, `bucket ${name}/egress exists`).toBeGreaterThan(0);
        const inKernel = Number(reader.rule(slot!).rate_bps);
        expect(inFile, `${name} in the file`).toBe(`${viaGet! / MBIT}mbit`);
        expect(inKernel, `${name} in ps_rules`).toBe(viaGet);
      }
      expect(file.rules.length).toBe(1 + names.length);
      // Cleanup through the API: DELETE removes them from the kernel too.
      const deleted = await call(names.map((n) => ({ method: 'DELETE', path: `/v1/rules/${n}`, token: true })), 20);
      expect(deleted.map((r) => r.status)).toEqual(names.map(() => 204));
      expect(reader.slotOf('c0/egress'), 'deleted bucket gone from ps_rules').toBeUndefined();
    });

    it('an overlapping rule is refused with 409, an invalid one with 400; nothing changes', async () => {
      const before = readFileSync(policy.path, 'utf8');
      const overlap = await one({ method: 'PUT', path: '/v1/rules/clash', token: true, body: { port: '5200-5202', protocol: 'udp', direction: 'ingress', rate: '1mbit' } });
      expect(overlap.status, overlap.body).toBe(409);
      expect(overlap.json.errors[0].field).toBe('port');
      const bad = await one({ method: 'PATCH', path: '/v1/rules/udp', token: true, body: { rate: '10mbps' } });
      expect(bad.status, bad.body).toBe(400);
      expect(bad.json.errors[0]).toMatchObject({ field: 'rate' });
      expect(bad.json.errors[0].reason).toMatch(/megabytes/);
      expect(readFileSync(policy.path, 'utf8')).toBe(before);
    });

    it('GET /metrics passes promtool check metrics', async () => {
      const promtool = which('promtool');
      if (!promtool) {
        if (isCI()) throw new Error('promtool missing (Debian package prometheus; make setup installs it)');
        console.warn('promtool missing (Debian package prometheus): metrics not checked');
        return;
      }
      const metrics = await one({ method: 'GET', path: '/metrics' });
      expect(metrics.status).toBe(200);
      expect(metrics.body).toMatch(/^portshaper_packets_total\{rule="udp",port="5201",protocol="udp",direction="ingress",verdict="drop"\} [1-9]/m);
      const file = join(policy.dir, 'metrics.txt');
      writeFileSync(file, metrics.body);
      const checked = await run('sh', ['-c', `${promtool} check metrics < ${file}`], { allowFailure: true });
      expect(checked.code, `promtool: ${checked.stdout}${checked.stderr}`).toBe(0);
    });

    it('CLI: set, status and rm through the API (human and --json); help; exit 2 when the agent is unreachable', async () => {
      const cli = (args: string[]) => run(nsEnterArgv(topo.nsB, [process.execPath])[0]!, [...nsEnterArgv(topo.nsB, [process.execPath]).slice(1), CLI, ...args, '--policy', policy.path], { allowFailure: true });
      for (const cmd of ['status', 'set', 'rm']) {
        const help = await run(process.execPath, [CLI, cmd, '--help']);
        expect(help.stdout, `${cmd} --help`).toMatch(/^Usage: portshaper/);
      }
      const created = await cli(['set', 'cli', '--port', '7100', '--protocol', 'tcp', '--direction', 'egress', '--rate', '3mbit']);
      expect(created.code, created.stderr).toBe(0);
      expect(created.stdout).toMatch(/^created cli: port 7100 tcp egress, rate 3mbit/);
      expect(reader.rule(reader.slotOf('cli/egress')!).rate_bps).toBe(3_000_000n);
      const changed = await cli(['set', 'cli', '--rate', '4mbit', '--json']);
      expect(JSON.parse(changed.stdout).rateBitsPerSecond).toBe(4_000_000);
      const refused = await cli(['set', 'cli', '--rate', '4mbps']);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/rate: ambiguous unit "mbps"/);
      const status = await cli(['status']);
      expect(status.code, status.stderr).toBe(0);
      expect(status.stdout).toMatch(/^RULE +PORT +PROTO +DIR +MODE +RATE +MEASURED +DROPPED PKTS +DROPPING$/m);
      expect(status.stdout).toMatch(/^cli +7100 +tcp +egress +shape +4mbit /m);
      expect(JSON.parse((await cli(['status', '--json'])).stdout).rules.map((r: { name: string }) => r.name)).toEqual(['udp', 'cli']);
      expect((await cli(['rm', 'cli'])).code).toBe(0);
      expect(reader.slotOf('cli/egress')).toBeUndefined();
      expect((await cli(['rm', 'cli'])).code, 'rm of a missing rule').toBe(1);
      const unreachable = await cli(['status', '--api', 'http://127.0.0.1:19999']);
      expect(unreachable.code).toBe(2);
      expect(unreachable.stderr).toMatch(/cannot reach the agent's API at http:\/\/127.0.0.1:19999 \(ECONNREFUSED\)/);
    });

    it('an API change survives a restart (the file is the source of truth)', async () => {
      const changed = await one({ method: 'PATCH', path: '/v1/rules/udp', token: true, body: { rate: '40mbit' }, contentType: 'application/merge-patch+json' });
      expect(changed.status, changed.body).toBe(200);
      agent.signal('SIGTERM');
      expect((await agent.exited).code).toBe(0);
      agent = AgentProcess.start(topo.nsB, policy.path);
      await agent.waitFor((r) => r.msg === 'API listening');
      const rule = await one({ method: 'GET', path: '/v1/rules/udp' });
      expect(rule.json.rateBitsPerSecond).toBe(40 * MBIT);
      expect(reader.rule(reader.slotOf('udp/ingress')!).rate_bps).toBe(40_000_000n);
      const r = await udp(100 * MBIT, 2);
      expect(udpWireBitsPerSecond(r) / (40 * MBIT)).toBeLessThan(1.05);
      expect(udpWireBitsPerSecond(r) / (40 * MBIT)).toBeGreaterThan(0.95);
    });

    it('a second agent cannot bind the API: exit 2, "address already in use" and who holds it; the first keeps serving', async () => {
      const second = AgentProcess.start(topo.nsB, policy.path);
      const { code } = await second.exited;
      expect(code, second.tail()).toBe(2);
      expect(second.stderr.join('')).toContain(`cannot listen on 127.0.0.1:9180: address already in use; held by node (pid ${agent.child.pid}) on 127.0.0.1`);
      expect((await one({ method: 'GET', path: '/healthz' })).status).toBe(200);
    });

    // Numbers for the closing note (printed, not asserted: speed
    // targets live in benchmarks); the requests themselves must succeed.
    it('measures: PUT → kernel latency, GET rps with 1,000 rules, RSS with 65,536 rules', async () => {
      const slot = reader.slotOf('udp/ingress')!;
      // 1. 1,000 PUTs one after another, each a new rate; this process watches ps_rules and stamps each change.
      const n = 1000;
      const rateOf = (i: number) => 20_000 + i; // kbit, all distinct
      const puts: Request[] = Array.from({ length: n }, (_, i) => ({ method: 'PUT', path: '/v1/rules/udp', token: true, body: { port: 5201, protocol: 'udp', direction: 'ingress', rate: `${rateOf(i)}kbit`, burst: '10ms' } }));
      const sent = call(puts, 1);
      const seen = new Map<number, number>();
      const last = BigInt(rateOf(n - 1) * 1000);
      const deadline = Date.now() + 120_000;
      for (let rate = reader.rule(slot).rate_bps; rate !== last && Date.now() < deadline; rate = reader.rule(slot).rate_bps) {
        const kbit = Number(rate / 1000n) - 20_000;
        if (kbit >= 0 && kbit < n && !seen.has(kbit)) seen.set(kbit, performance.timeOrigin + performance.now());
        // Yield each round so the child's pipes are served.
        await new Promise((r) => setImmediate(r));
      }
      seen.set(n - 1, performance.timeOrigin + performance.now());
      const responses = await sent;
      expect(responses.every((r) => r.status === 200)).toBe(true);
      const inKernel = [...seen].map(([i, t]) => t - responses[i]!.at).sort((a, b) => a - b);
      const roundTrip = responses.map((r) => r.ms).sort((a, b) => a - b);
      const pct = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))]!.toFixed(2);
      console.info(`PUT → new rate in ps_rules over ${inKernel.length} of ${n} changes (others overwritten before a read): p50 ${pct(inKernel, 50)} ms, p99 ${pct(inKernel, 99)} ms; PUT round trip p50 ${pct(roundTrip, 50)} ms, p99 ${pct(roundTrip, 99)} ms`);

      // 2. GET /v1/rules/{name} with 1,000 rules: 32 concurrent clients for 5 s.
      const rules = (count: number) => Array.from({ length: count }, (_, i) => `  - name: r${i}\n    port: ${(i % 65535) + 1}\n    protocol: ${i < 65535 ? 'tcp' : 'udp'}\n    direction: ingress\n    rate: ${1 + (i % 100)}mbit\n`).join('');
      const head = `pinDir: ${pinDir}\ninterfaces:\n  - name: ${topo.ifB}\napi:\n  listen: 127.0.0.1:9180\n  tokenFile: ${tokenFile}\nrules:\n`;
      const thousand = await one({ method: 'PUT', path: '/v1/policy', token: true, body: head + rules(1000), contentType: 'application/yaml' });
      expect(thousand.status, thousand.body).toBe(200);
      const gets: Request[] = Array.from({ length: 1000 }, (_, i) => ({ method: 'GET', path: `/v1/rules/r${(i * 7919) % 1000}` }));
      const load = await call(gets, 32, 5000);
      const ok = load.filter((r) => r.status === 200);
      const getMs = ok.map((r) => r.ms).sort((a, b) => a - b);
      console.info(`GET /v1/rules/{name} with 1,000 rules, 32 concurrent for 5 s: ${(ok.length / 5).toFixed(0)} req/s (${load.length - ok.length} errors), latency p50 ${pct(getMs, 50)} ms, p99 ${pct(getMs, 99)} ms`);

      // 3. RSS of the agent with 65,536 rules (after the 1 s counter sampling has run a few times).
      const big = await call([{ method: 'PUT', path: '/v1/policy', token: true, body: head + rules(65536), contentType: 'application/yaml' }]);
      expect(big[0]!.status, big[0]!.body.slice(0, 500)).toBe(200);
      console.info(`PUT /v1/policy with 65,536 rules: ${big[0]!.ms.toFixed(0)} ms (apply ${JSON.parse(big[0]!.body).ms} ms)`);
      const list = await call([{ method: 'GET', path: '/v1/rules' }]);
      console.info(`GET /v1/rules with 65,536 rules: ${list[0]!.ms.toFixed(0)} ms, ${(list[0]!.body.length / 1e6).toFixed(1)} MB`);
      await new Promise((r) => setTimeout(r, 6000));
      const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${agent.child.pid}/status`, 'utf8'))?.[1];
      const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${agent.child.pid}/status`, 'utf8'))?.[1];
      console.info(`agent RSS with 65,536 rules after the PUT and a GET of all: ${(Number(rss) / 1024).toFixed(0)} MiB (peak ${(Number(hwm) / 1024).toFixed(0)} MiB)`);
      // The same policy loaded at start, with the API up and sampling: what a host running 65,536 rules holds.
      agent.signal('SIGTERM');
      await agent.exited;
      agent = AgentProcess.start(topo.nsB, policy.path);
      await agent.waitFor((r) => r.msg === 'API listening', 120_000);
      await new Promise((r) => setTimeout(r, 6000));
      const status = readFileSync(`/proc/${agent.child.pid}/status`, 'utf8');
      const mib = (key: string) => (Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)?.[1]) / 1024).toFixed(0);
      console.info(`agent RSS with 65,536 rules, started from the file: ${mib('VmRSS')} MiB (peak ${mib('VmHWM')} MiB)`);
    }, 600_000);
  },
  { tools: ['nsenter'] },
);
