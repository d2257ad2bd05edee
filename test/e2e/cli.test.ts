/**
 * The command line as an operator meets it: help, exit codes, positioned
 * policy errors, and the error a non-root user gets (run through setpriv
 * with every capability dropped).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, PolicyDir } from '../helpers/agent.js';
import { describeKernel } from '../helpers/env.js';
import { run } from '../helpers/net.js';

const cli = (args: string[], prefix: string[] = []) =>
  run(prefix[0] ?? process.execPath, [...prefix.slice(1), ...(prefix.length ? [process.execPath] : []), CLI, ...args], { allowFailure: true });

describe('portshaper command line', () => {
  const dir = new PolicyDir();
  afterAll(() => dir.remove());

  it('prints help for every command with exit 0', async () => {
    for (const cmd of [[], ['agent'], ['validate'], ['detach']]) {
      const r = await cli([...cmd, '--help']);
      expect(r.code, `portshaper ${cmd.join(' ')} --help`).toBe(0);
      expect(r.stdout).toMatch(/Usage: portshaper/);
    }
  });

  it('rejects an unknown command or option with exit 1 and points at --help', async () => {
    expect((await cli(['frobnicate'])).code).toBe(1);
    const r = await cli(['agent', '--polcy', 'x']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--help/);
  });

  it('validate: exit 0 for the bundled policy, 1 with file:line:column for a broken one', async () => {
    const ok = await cli(['validate', join(import.meta.dirname, '..', '..', 'examples', 'policy.yaml')]);
    expect(ok.code, ok.stderr).toBe(0);
    const bad = join(dir.dir, 'bad.yaml');
    writeFileSync(bad, 'interfaces:\n  - name: lo\nrules:\n  - port: 70000\n    rate: 10mbps\n');
    const r = await cli(['validate', bad]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${bad}:4:11:`);
    expect(r.stderr).toContain(`${bad}:5:11:`);
    expect(r.stderr).toMatch(/megabytes per second/);
  });

});

// Dropping privileges needs them first: root only (mandatory in CI).
describeKernel('portshaper agent without privileges', () => {
  it('exits 2 with a message that says what is needed', async () => {
    const r = await cli(['agent', '--policy', join(import.meta.dirname, '..', '..', 'examples', 'policy.yaml')], [
      'setpriv',
      '--reuid=65534',
      '--regid=65534',
      '--clear-groups',
      '--inh-caps=-all',
      '--bounding-set=-all',
      '--',
    ]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/needs root or CAP_BPF \+ CAP_PERFMON \+ CAP_NET_ADMIN/);
    expect(r.stderr).toMatch(/PS_PERMISSION/);
  });
});
