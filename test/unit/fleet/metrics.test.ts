/**
 * The fleet-facing part of /metrics: the policy in force and its reloads,
 * per-rule series capped by metrics.maxRules with all-rules totals and a count
 * of what was left out; the metrics-only app serves /metrics, /healthz and
 * /readyz without a token and nothing else. promtool checks the text when it
 * is installed (setup.sh installs it; CI=true requires it).
 */
import { spawnSync } from 'node:child_process';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { renderMetrics, type MetricsState } from '../../../src/api/metrics.js';
import { buildMetricsApp } from '../../../src/api/metrics-server.js';
import { isCI, which } from '../../helpers/tools.js';
import { FakeService, fakeRule } from '../api/fake.js';

const build = { version: '0.1.0', layout: 3 };
const totals = [
  { direction: 'ingress' as const, passedPackets: 30, passedBytes: 45_000, droppedPackets: 6, droppedBytes: 9000 },
  { direction: 'egress' as const, passedPackets: 1, passedBytes: 60, droppedPackets: 0, droppedBytes: 0 },
];
const state: MetricsState = { source: '/etc/portshaper/node.w1.yaml', hash: 'f00d', reloads: { applied: 3, rejected: 1, failed: 0 }, lastReloadSuccessful: false, maxRules: 2, ruleCount: 3, totals };

function value(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('/metrics for a fleet', () => {
  const stats = new FakeService().stats();
  const rules = [fakeRule('a', 80), fakeRule('b', 81), fakeRule('c', 82)];
  const text = renderMetrics(rules, stats, build, state);

  it('exposes the policy in force, its reloads and whether the last one was applied', () => {
    expect(value(text, 'portshaper_policy_info{hash="f00d",source="/etc/portshaper/node.w1.yaml"}')).toBe(1);
    expect(value(text, 'portshaper_policy_reloads_total{result="applied"}')).toBe(3);
    expect(value(text, 'portshaper_policy_reloads_total{result="rejected"}')).toBe(1);
    expect(value(text, 'portshaper_policy_reloads_total{result="failed"}')).toBe(0);
    expect(value(text, 'portshaper_policy_last_reload_successful')).toBe(0);
  });

  it('keeps per-rule series to the first maxRules rules, counts the rest, and shows the totals of every rule', () => {
    const ruleNames = new Set([...text.matchAll(/^portshaper_packets_total\{rule="([^"]+)"/gm)].map((m) => m[1]));
    expect([...ruleNames]).toEqual(['a', 'b']);
    expect(text).not.toMatch(/rule="c"/);
    expect(value(text, 'portshaper_metrics_rules_omitted')).toBe(1);
    expect(value(text, 'portshaper_rules')).toBe(3);
    expect(value(text, 'portshaper_all_rules_packets_total{direction="ingress",verdict="drop"}')).toBe(6);
    expect(value(text, 'portshaper_all_rules_bytes_total{direction="ingress",verdict="pass"}')).toBe(45_000);
    expect(value(text, 'portshaper_all_rules_packets_total{direction="egress",verdict="pass"}')).toBe(1);
    const none = renderMetrics(rules, stats, build, { ...state, maxRules: 0 });
    expect(none).not.toMatch(/^portshaper_packets_total\{/m);
    expect(value(none, 'portshaper_metrics_rules_omitted')).toBe(3);
  });

  it('passes promtool check metrics', () => {
    const promtool = which('promtool');
    if (!promtool) {
      if (isCI()) throw new Error('promtool missing (Debian package prometheus; scripts/setup.sh installs it)');
      console.warn('promtool missing: metrics text not checked');
      return;
    }
    const r = spawnSync(promtool, ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(`${r.stdout}${r.stderr}`.trim(), 'promtool check metrics').toBe('');
    expect(r.status).toBe(0);
  });
});

describe('metrics-only listener app', () => {
  let service: FakeService;
  let app: FastifyInstance;
  beforeEach(async () => {
    service = new FakeService();
    app = await buildMetricsApp({ service });
  });
  afterEach(async () => app.close());

  it('serves /metrics, /healthz and /readyz without a token', async () => {
    const metrics = await app.inject({ method: 'GET', url: '/metrics' });
    expect(metrics.statusCode).toBe(200);
    expect(metrics.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(metrics.body).toContain('portshaper_policy_info{hash="ab",source="/etc/portshaper/policy.yaml"} 1');
    expect((await app.inject({ method: 'GET', url: '/healthz' })).json()).toEqual({ status: 'ok' });
    expect((await app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
    service.ready_ = { ready: false, reason: 'not attached on eth0', interfaces: [] };
    expect((await app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(503);
  });

  it('serves nothing else: no API reads, no writes', async () => {
    for (const [method, url] of [['GET', '/v1/rules'], ['GET', '/v1/policy'], ['PUT', '/v1/policy'], ['PATCH', '/v1/rules/web'], ['GET', '/openapi.json']] as const) {
      const r = await app.inject({ method, url });
      expect(r.statusCode, `${method} ${url}`).toBe(404);
      expect(r.json().message).toMatch(/serves only GET \/metrics, \/healthz and \/readyz/);
    }
  });
});
