/**
 * `portshaper validate` is what CI pipelines run, on hosts without libbpf or
 * root: it must work with libbpf unavailable, and a kernel command there must
 * fail with the loader's actionable error, not a stack trace. libbpf is made
 * unavailable by pointing PORTSHAPER_LIBBPF at a missing file (the loader
 * then tries nothing else). Runs the built CLI (make build).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const DIST = join(ROOT, 'dist');
const CLI = join(DIST, 'cli', 'main.js');
const MISSING_LIBBPF = '/nonexistent/portshaper-test/libbpf.so.1';
const NO_LIBBPF = { ...process.env, PORTSHAPER_LIBBPF: MISSING_LIBBPF };
// A Node stack frame ("    at run (file.js:1:2)"): what an operator must never see for a known failure.
const STACK_FRAME = /^\s+at .+:\d+:\d+\)?$/m;

function cli(args: string[], env: NodeJS.ProcessEnv = NO_LIBBPF) {
  const r = spawnSync(process.execPath, [CLI, ...args], { env, encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('portshaper without libbpf', () => {
  let dir: string;
  beforeAll(() => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "make build" first`);
    dir = mkdtempSync(join(tmpdir(), 'ps-validate-anywhere-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('validate: exit 0 for a valid policy', () => {
    const r = cli(['validate', join(ROOT, 'examples', 'policy.yaml')]);
    expect(r.code, `validate examples/policy.yaml: ${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/policy\.yaml: ok/);
    expect(r.stderr, 'validate examples/policy.yaml prints no stack').not.toMatch(STACK_FRAME);
  });

  it('validate: exit 1 with file:line:column for an invalid policy, and no stack trace', () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'interfaces:\n  - name: lo\nrules:\n  - port: 70000\n    rate: 10mbps\n');
    const r = cli(['validate', '--no-interfaces', bad]);
    expect(r.code, `validate bad.yaml: ${r.stderr}`).toBe(1);
    expect(r.stderr).toContain(`${bad}:4:11: rules[0].port: 70000 is out of range 1..65535`);
    expect(r.stderr).toMatch(new RegExp(`^${bad.replace(/[.]/g, '\\.')}:5:11: rules\\[0\\]\\.rate: `, 'm'));
    expect(r.stderr, 'validate bad.yaml prints no stack').not.toMatch(STACK_FRAME);
  });

  it('detach: exit 2 with the PS_ error that says how to get libbpf, not a stack trace', () => {
    // A pin directory that lists interfaces makes detach open a pin, the first libbpf call.
    const pinDir = mkdtempSync(join(dir, 'pins-'));
    writeFileSync(join(pinDir, 'ps_ifaces'), '');
    const r = cli(['detach', '--pin-dir', pinDir]);
    expect(r.code, `detach --pin-dir: ${r.stderr}`).toBe(2);
    expect(r.stderr, 'detach prints no stack').not.toMatch(STACK_FRAME);
    if (process.getuid?.() === 0) {
      // As root the preflight passes and the first libbpf call meets the missing library.
      expect(r.stderr).toContain(`could not load libbpf from PORTSHAPER_LIBBPF; tried:\n    ${MISSING_LIBBPF}: `);
      expect(r.stderr).toMatch(/fix: set PORTSHAPER_LIBBPF to the path of libbpf\.so\.1, or unset it to search libbpf\.so\.1, .* \[PS_LIBBPF_NOT_FOUND\]$/m);
    } else {
      // Without root the privilege check refuses first: still a coded, actionable error.
      expect(r.stderr).toMatch(/\[PS_PERMISSION\]$/m);
    }
  });

  it('imports every module of dist/ without opening libbpf or libc', () => {
    const script = [
      "import { readdirSync } from 'node:fs';",
      `const dist = ${JSON.stringify(DIST)};`,
      // cli/main.js runs the command line when imported; every other module only defines things.
      "const files = readdirSync(dist, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.js') && f !== 'cli/main.js');",
      "for (const f of files) await import(dist + '/' + f);",
      'console.log(files.length);',
    ].join('\n');
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      env: { ...NO_LIBBPF, PORTSHAPER_LIBC: '/nonexistent/portshaper-test/libc.so.6' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status, `import dist/**/*.js with no libbpf and no libc: ${r.stderr}`).toBe(0);
    expect(Number(r.stdout.trim()), 'modules imported').toBeGreaterThan(20);
  });
});
