/**
 * The API over TLS, end to end, as an operator on another host uses it: the
 * test makes a CA and a server certificate for the agent's address with
 * openssl, the real agent serves HTTPS on its veth address in one namespace
 * (api.tls), and the CLI and curl call it from the other namespace. The CLI
 * trusts the CA through --ca or PORTSHAPER_CA; without it, it says what to
 * pass instead of printing a stack trace.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { removePins } from '../../src/kernel/pins.js';
import { AgentProcess, CLI, PolicyDir, purgeAgent } from '../helpers/agent.js';
import { testPinDir } from '../helpers/dataplane.js';
import { describeKernel } from '../helpers/env.js';
import { createTopology, nsEnterArgv, run, type RunResult, type Topology } from '../helpers/net.js';

const PORT = 9443;

describeKernel(
  'REST API over TLS from another namespace (CLI with --ca / PORTSHAPER_CA, curl --cacert)',
  () => {
    let topo: Topology;
    let agent: AgentProcess | undefined;
    const pinDir = testPinDir('tls');
    const policy = new PolicyDir();
    const file = (name: string) => join(policy.dir, name);
    const tokenFile = file('token');
    let api: string;

    const openssl = (args: string[]) => run('openssl', args);
    /** A CA key and self-signed CA certificate named `name`. */
    const makeCa = async (name: string) => {
      await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
        '-subj', `/CN=portshaper test ${name}`, '-keyout', file(`${name}.key`), '-out', file(`${name}.pem`),
        '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign']);
    };

    /** argv run in the other namespace (nsA): an operator's host. */
    const onOperatorHost = (argv: string[]): Promise<RunResult> => {
      const [cmd, ...args] = nsEnterArgv(topo.nsA, argv);
      return run(cmd!, args, { allowFailure: true, ns: topo.nsA });
    };
    /** The CLI on the operator's host, with PORTSHAPER_CA only as given in env. */
    const cli = (args: string[], env: string[] = []) => onOperatorHost(['env', '-u', 'PORTSHAPER_CA', ...env, process.execPath, CLI, ...args]);
    const client = (ca: string[] = []) => ['--api', api, '--token-file', tokenFile, ...ca];

    beforeAll(async () => {
      removePins(pinDir);
      topo = await createTopology('tls');
      api = `https://${topo.ipB}:${PORT}`;
      // The CA that signs the agent's certificate, and another one the CLI must not accept in its place.
      await makeCa('ca');
      await makeCa('other');
      await openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${topo.ipB}`,
        '-keyout', file('agent.key'), '-out', file('agent.csr')]);
      // Clients check the address against subjectAltName (the CN is not looked at).
      writeFileSync(file('agent.ext'), `subjectAltName=IP:${topo.ipB}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n`);
      await openssl(['x509', '-req', '-in', file('agent.csr'), '-CA', file('ca.pem'), '-CAkey', file('ca.key'), '-CAcreateserial',
        '-days', '2', '-extfile', file('agent.ext'), '-out', file('agent.pem')]);
      policy.write(`pinDir: ${pinDir}
interfaces:
  - name: ${topo.ifB}
api:
  listen: ${topo.ipB}:${PORT}
  tokenFile: ${tokenFile}
  tls:
    cert: ${file('agent.pem')}
    key: ${file('agent.key')}
rules:
  - name: web   # changed over TLS below
    port: 8443
    protocol: tcp
    direction: ingress
    rate: 10mbit
`);
      agent = AgentProcess.start(topo.nsB, policy.path);
      const listening = await agent.waitFor((r) => r.msg === 'API listening', 20_000);
      expect(listening.url, 'agent serves https').toBe(api);
    });
    afterAll(async () => {
      await agent?.kill();
      await purgeAgent(topo?.nsB, pinDir);
      removePins(pinDir);
      policy.remove();
      await topo?.destroy();
    });

    it('status and set work with --ca; the change is in the policy file', async () => {
      const status = await cli(['status', ...client(['--ca', file('ca.pem')])]);
      expect(status.code, `status --ca: ${status.stderr}`).toBe(0);
      expect(status.stdout).toMatch(/^web\s+8443\s+tcp\s+ingress\s.*10mbit/m);
      const set = await cli(['set', 'web', '--rate', '20mbit', ...client(['--ca', file('ca.pem')])]);
      expect(set.code, `set --ca: ${set.stderr}`).toBe(0);
      expect(set.stdout).toMatch(/changed web: .*rate 20mbit/);
      expect(policy.read()).toMatch(/rate: 20mbit/);
      expect(policy.read(), 'comment kept').toContain('# changed over TLS below');
    });

    it('PORTSHAPER_CA works like --ca', async () => {
      const status = await cli(['status', '--json', ...client()], [`PORTSHAPER_CA=${file('ca.pem')}`]);
      expect(status.code, `status with PORTSHAPER_CA: ${status.stderr}`).toBe(0);
      expect((JSON.parse(status.stdout) as { rules: { name: string; rate: string }[] }).rules).toEqual([expect.objectContaining({ name: 'web', rate: '20mbit' })]);
    });

    it('without the CA, or with another one, the CLI refuses the agent with a message that names --ca (exit 2, no stack trace)', async () => {
      for (const [what, ca] of [['no --ca', []], ['another CA', ['--ca', file('other.pem')]]] as const) {
        const r = await cli(['set', 'web', '--rate', '30mbit', ...client([...ca])]);
        expect(r.code, `${what}: exit code (${r.stderr})`).toBe(2);
        expect(r.stderr, what).toMatch(new RegExp(`^portshaper: cannot reach the agent's API at ${api.replace(/\./g, '\\.')} \\(its TLS certificate is not signed by .*--ca FILE`));
        expect(r.stderr, `${what}: no stack trace`).not.toMatch(/\n\s+at /);
      }
      expect(policy.read(), 'refused calls changed nothing').toMatch(/rate: 20mbit/);
      const missing = await cli(['status', ...client(['--ca', file('absent.pem')])]);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toContain(`cannot read --ca ${file('absent.pem')}: ENOENT`);
    });

    it('curl with --cacert reads and writes; without it curl refuses the certificate', async () => {
      const token = readFileSync(tokenFile, 'utf8').trim();
      const curl = (args: string[]) => onOperatorHost(['curl', '-sS', ...args]);
      const patch = await curl(['--cacert', file('ca.pem'), '-X', 'PATCH', '-H', `Authorization: Bearer ${token}`,
        '-H', 'content-type: application/merge-patch+json', '-d', '{"rate":"25mbit"}', '-w', '\n%{http_code}', `${api}/v1/rules/web`]);
      expect(patch.code, patch.stderr).toBe(0);
      expect(patch.stdout.trim().split('\n').at(-1)).toBe('200');
      const get = await curl(['--cacert', file('ca.pem'), `${api}/v1/rules/web`]);
      expect(get.code, get.stderr).toBe(0);
      expect(JSON.parse(get.stdout)).toMatchObject({ name: 'web', rate: '25mbit' });
      // 60: peer certificate cannot be authenticated with known CA certificates.
      const untrusted = await curl([`${api}/healthz`]);
      expect(untrusted.code).toBe(60);
    });
  },
  { tools: ['openssl', 'curl', 'nsenter'] },
);
