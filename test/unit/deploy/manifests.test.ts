/**
 * deploy/: every Kubernetes manifest validated against the Kubernetes (and
 * prometheus-operator) schemas of kubernetes-models; every kustomization
 * lists its directory and renders with `kubectl kustomize`; the DaemonSet's
 * invariants (the ones that keep enforcement on the host and the agent
 * unprivileged); the ConfigMap's policies pass `portshaper validate`; the
 * alerting rules pass promtool's check and unit tests and match the
 * PrometheusRule; the rules and the dashboard only query metrics the agent
 * exports. No cluster needed.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { ConfigMap, Namespace, ServiceAccount } from 'kubernetes-models/v1';
import { DaemonSet } from 'kubernetes-models/apps/v1';
import { PodMonitor, PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { renderMetrics } from '../../../src/api/metrics.js';
import { runValidate } from '../../../src/cli/validate.js';
import { isCI, which } from '../../helpers/tools.js';
import { FakeService, fakeRule } from '../api/fake.js';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const K8S = join(ROOT, 'deploy', 'kubernetes');

/** The models manifests may use, by apiVersion and kind. */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'v1/ConfigMap': ConfigMap,
  'apps/v1/DaemonSet': DaemonSet,
  'monitoring.coreos.com/v1/PodMonitor': PodMonitor,
  'monitoring.coreos.com/v1/PrometheusRule': PrometheusRule,
};

// Loose views of what the invariant checks read.
interface Obj { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> }; [k: string]: unknown }
interface Probe { httpGet: { path: string; port: string | number } }
interface Mount { name: string; mountPath: string; mountPropagation?: string; subPath?: string; readOnly?: boolean }
interface Container {
  name: string; image: string; args?: string[]; command?: string[];
  env?: { name: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  ports?: { name: string; containerPort: number }[];
  startupProbe?: Probe; livenessProbe?: Probe; readinessProbe?: Probe;
  lifecycle?: unknown;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: { privileged?: boolean; runAsUser?: number; allowPrivilegeEscalation?: boolean; readOnlyRootFilesystem?: boolean; capabilities?: { drop?: string[]; add?: string[] }; seccompProfile?: { type: string }; appArmorProfile?: { type: string } };
  volumeMounts?: Mount[];
}
interface PodSpec {
  hostNetwork?: boolean; priorityClassName?: string; serviceAccountName?: string; automountServiceAccountToken?: boolean;
  tolerations?: { operator?: string }[];
  initContainers?: Container[]; containers: Container[];
  volumes: { name: string; hostPath?: { path: string }; configMap?: { name: string }; emptyDir?: object }[];
}
interface DaemonSetObj extends Obj {
  spec: { selector: { matchLabels: Record<string, string> }; updateStrategy: { type: string; rollingUpdate?: { maxSurge?: number | string; maxUnavailable?: number | string } }; template: { metadata: { labels: Record<string, string>; annotations?: Record<string, string> }; spec: PodSpec } };
}

/** Every manifest file of a directory tree (kustomization.yaml excluded). */
function manifestFiles(dir = K8S): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.yaml') && basename(f) !== 'kustomization.yaml')
    .map((f) => join(dir, f))
    .sort();
}

function load(file: string): Obj[] {
  return parseAllDocuments(readFileSync(file, 'utf8')).map((d) => {
    if (d.errors.length) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`);
    return d.toJS() as Obj;
  });
}

const objects = manifestFiles().flatMap((file) => load(file).map((obj) => ({ file: file.slice(ROOT.length), obj })));
const find = <T extends Obj>(kind: string, name: string): T => {
  const hit = objects.find((o) => o.obj.kind === kind && o.obj.metadata.name === name);
  if (!hit) throw new Error(`no ${kind} ${name} under deploy/kubernetes`);
  return hit.obj as T;
};
const agentDs = find<DaemonSetObj>('DaemonSet', 'portshaper');
const cleanupDs = find<DaemonSetObj>('DaemonSet', 'portshaper-cleanup');
const configMap = find<Obj & { data: Record<string, string> }>('ConfigMap', 'portshaper-policy');
const pod = agentDs.spec.template.spec;
const agent = pod.containers.find((c) => c.name === 'agent')!;
const init = pod.initContainers?.find((c) => c.name === 'mount-bpffs');
const policyArg = agent.args?.find((a) => a.startsWith('--policy='))?.slice('--policy='.length) ?? '';
const sharedPolicy = parse(configMap.data[basename(policyArg)] ?? '') as { pinDir: string; api: { tokenFile: string } };

/** Exported metric names: the TYPE lines of a rendered /metrics. */
function exportedMetrics(): Set<string> {
  const service = new FakeService();
  const text = renderMetrics([fakeRule('a', 80)], service.stats(), { version: '0', layout: 1 }, service.metricsState());
  return new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
}

/** Metric names a PromQL expression selects (identifiers followed by { or [ or standing alone before an operator). */
function metricsIn(expr: string): string[] {
  const withoutStrings = expr.replace(/"[^"]*"/g, '""');
  const names = [...withoutStrings.matchAll(/\b([a-z_][a-z0-9_]*)\s*(?=\{|\[)/g)].map((m) => m[1]!);
  return names.filter((n) => !['by', 'without', 'on', 'ignoring', 'offset'].includes(n));
}

function tool(name: string): string | undefined {
  const path = which(name);
  if (!path && isCI()) throw new Error(`${name} missing: scripts/setup.sh installs it`);
  if (!path) console.warn(`${name} missing: check skipped (set CI=true to make this a failure)`);
  return path;
}

describe('deploy/kubernetes manifests', () => {
  it('are all known kinds and valid against the Kubernetes and prometheus-operator schemas', () => {
    expect(objects.length).toBeGreaterThanOrEqual(7);
    for (const { file, obj } of objects) {
      const Model = MODELS[`${obj.apiVersion}/${obj.kind}`];
      expect(Model, `${file}: ${obj.apiVersion} ${obj.kind} has no model in this test`).toBeDefined();
      expect(() => new Model!(obj as never).validate(), `${file}: ${obj.kind} ${obj.metadata.name}`).not.toThrow();
    }
  });

  it('put every namespaced object in the portshaper namespace, whose Pod Security level is privileged', () => {
    const ns = find<Obj>('Namespace', 'portshaper');
    expect(ns.metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe('privileged');
    for (const { file, obj } of objects.filter((o) => o.obj.kind !== 'Namespace')) {
      expect(obj.metadata.namespace, `${file}: ${obj.kind} ${obj.metadata.name}`).toBe('portshaper');
    }
    const sa = find<Obj & { automountServiceAccountToken?: boolean }>('ServiceAccount', 'portshaper');
    expect(sa.automountServiceAccountToken, 'ServiceAccount mounts no token').toBe(false);
    for (const ds of [agentDs, cleanupDs]) {
      expect(ds.spec.template.spec.serviceAccountName).toBe('portshaper');
      expect(ds.spec.template.spec.automountServiceAccountToken, `${ds.metadata.name}: no token`).toBe(false);
    }
  });

  it('list every manifest in a kustomization, and `kubectl kustomize` renders each one', () => {
    const dirs = [K8S, ...readdirSync(K8S, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => join(K8S, d.name))];
    const kubectl = tool('kubectl');
    for (const dir of dirs) {
      const kustomization = parse(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as { resources: string[] };
      const own = readdirSync(dir).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort();
      expect([...kustomization.resources].sort(), `${dir.slice(ROOT.length)}/kustomization.yaml resources`).toEqual(own);
      if (!kubectl) continue;
      const r = spawnSync(kubectl, ['kustomize', dir], { encoding: 'utf8', timeout: 60_000 });
      expect(r.status, `kubectl kustomize ${dir.slice(ROOT.length)}: ${r.stderr}`).toBe(0);
      const rendered = parseAllDocuments(r.stdout).map((d) => d.toJS() as Obj);
      const expected = own.flatMap((f) => load(join(dir, f)));
      expect(rendered.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual(expected.map((o) => `${o.kind}/${o.metadata.name}`).sort());
      for (const o of rendered.filter((x) => x.kind === 'DaemonSet') as DaemonSetObj[]) {
        for (const c of [...(o.spec.template.spec.initContainers ?? []), ...o.spec.template.spec.containers]) {
          expect(c.image, `${o.metadata.name}/${c.name}: image set by kustomize images:`).toBe('portshaper:0.1.0');
        }
      }
    }
  });
});

describe('the agent DaemonSet', () => {
  it('selects its own pods', () => {
    for (const ds of [agentDs, cleanupDs]) {
      expect(ds.spec.template.metadata.labels, ds.metadata.name).toMatchObject(ds.spec.selector.matchLabels);
    }
    expect(agentDs.spec.selector.matchLabels).not.toEqual(cleanupDs.spec.selector.matchLabels);
  });

  it('never runs two agents on a node and never detaches on stop (enforcement survives the pod)', () => {
    expect(agentDs.spec.updateStrategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1, maxSurge: 0 } });
    for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
      expect(c.lifecycle, `${c.name}: no lifecycle hooks (a preStop detach would lift the limits)`).toBeUndefined();
      expect([...(c.args ?? []), ...(c.command ?? [])].join(' ')).not.toMatch(/detach/);
    }
  });

  it('runs on every node in the node network namespace, as node-critical', () => {
    expect(pod.hostNetwork).toBe(true);
    expect(pod.priorityClassName).toBe('system-node-critical');
    expect(pod.tolerations).toContainEqual({ operator: 'Exists' });
  });

  it('gives the agent uid 0 with exactly BPF, PERFMON and NET_ADMIN, and says why the profiles are unconfined', () => {
    const sc = agent.securityContext!;
    expect(sc.privileged ?? false).toBe(false);
    expect(sc.runAsUser).toBe(0);
    expect(sc.allowPrivilegeEscalation).toBe(false);
    expect(sc.readOnlyRootFilesystem).toBe(true);
    expect(sc.capabilities?.drop).toEqual(['ALL']);
    expect([...(sc.capabilities?.add ?? [])].sort()).toEqual(['BPF', 'NET_ADMIN', 'PERFMON']);
    expect(sc.seccompProfile?.type).toBe('Unconfined');
    expect(sc.appArmorProfile?.type).toBe('Unconfined');
    const text = readFileSync(join(K8S, 'daemonset.yaml'), 'utf8');
    expect(text, 'the reason for Unconfined is in a comment').toMatch(/#.*seccomp[\s\S]*bpf\(\)[\s\S]*AppArmor[\s\S]*\/sys\/fs\/bpf/);
  });

  it('keeps pins on the host bpffs: hostPath /sys/fs/bpf, mounted by a privileged init container only if missing', () => {
    const bpffs = pod.volumes.find((v) => v.hostPath?.path === '/sys/fs/bpf');
    expect(bpffs, 'a hostPath volume of /sys/fs/bpf').toBeDefined();
    expect(agent.volumeMounts).toContainEqual({ name: bpffs!.name, mountPath: '/sys/fs/bpf', mountPropagation: 'HostToContainer' });
    expect(init, 'init container mount-bpffs').toBeDefined();
    expect(init!.args).toEqual(['mount-bpffs', '/sys/fs/bpf']);
    expect(init!.command, 'the image entrypoint (portshaper), no shell').toBeUndefined();
    expect(init!.securityContext?.privileged).toBe(true);
    expect(init!.volumeMounts).toContainEqual({ name: bpffs!.name, mountPath: '/sys/fs/bpf', mountPropagation: 'Bidirectional' });
    expect(sharedPolicy.pinDir.startsWith('/sys/fs/bpf/'), `pinDir ${sharedPolicy.pinDir} on the host bpffs`).toBe(true);
    expect(cleanupDs.spec.template.spec.initContainers?.[0]?.args, 'cleanup purges the pinDir of the policy').toContain(`--pin-dir=${sharedPolicy.pinDir}`);
  });

  it('mounts the ConfigMap as a directory (never subPath) where --policy points, and NODE_NAME/NODE_IP from the Downward API', () => {
    const volume = pod.volumes.find((v) => v.configMap?.name === configMap.metadata.name);
    expect(volume, `a configMap volume of ${configMap.metadata.name}`).toBeDefined();
    for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
      for (const m of c.volumeMounts ?? []) expect(m.subPath, `${c.name}: ${m.mountPath} has no subPath`).toBeUndefined();
    }
    const mount = agent.volumeMounts?.find((m) => m.name === volume!.name);
    expect(mount?.mountPath).toBe(posix.dirname(policyArg));
    expect(configMap.data, `the ConfigMap has the key ${basename(policyArg)}`).toHaveProperty(basename(policyArg));
    const fieldOf = (name: string) => agent.env?.find((e) => e.name === name)?.valueFrom?.fieldRef?.fieldPath;
    expect(fieldOf('NODE_NAME')).toBe('spec.nodeName');
    expect(fieldOf('NODE_IP')).toBe('status.hostIP');
  });

  it('writes only to volumes: the API token file lives on a writable mount', () => {
    const writable = (agent.volumeMounts ?? []).filter((m) => !m.readOnly && pod.volumes.find((v) => v.name === m.name)?.emptyDir);
    expect(writable.some((m) => sharedPolicy.api.tokenFile.startsWith(`${m.mountPath}/`)), `api.tokenFile ${sharedPolicy.api.tokenFile} on an emptyDir`).toBe(true);
  });

  it('agrees on the metrics port and names everywhere: listener, container port, probes, annotations, PodMonitor', () => {
    const port = agent.ports?.find((p) => p.name === 'metrics')?.containerPort;
    expect(agent.args).toContain(`--metrics-listen=$(NODE_IP):${port}`);
    expect(agent.startupProbe?.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
    expect(agent.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
    expect(agent.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
    const annotations = agentDs.spec.template.metadata.annotations ?? {};
    expect(annotations).toMatchObject({ 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(port), 'prometheus.io/path': '/metrics' });
    const monitor = find<Obj & { spec: { jobLabel: string; selector: { matchLabels: Record<string, string> }; podMetricsEndpoints: { port: string; path: string }[] } }>('PodMonitor', 'portshaper');
    expect(agentDs.spec.template.metadata.labels).toMatchObject(monitor.spec.selector.matchLabels);
    expect(cleanupDs.spec.template.metadata.labels, 'the PodMonitor does not select the cleanup pods').not.toMatchObject(monitor.spec.selector.matchLabels);
    expect(monitor.spec.podMetricsEndpoints.map((e) => [e.port, e.path])).toEqual([['metrics', '/metrics']]);
    expect(agentDs.spec.template.metadata.labels[monitor.spec.jobLabel], 'job label "portshaper", as the alerts select').toBe('portshaper');
  });

  it('requests memory and sets a limit above the RSS measured in the container (make image-test: 116 MiB)', () => {
    const mib = (q = '') => Number(/^(\d+)Mi$/.exec(q)?.[1] ?? Number.NaN);
    const { requests, limits } = agent.resources ?? {};
    expect(mib(requests?.memory)).toBeGreaterThanOrEqual(128);
    expect(mib(limits?.memory)).toBeGreaterThanOrEqual(2 * 116);
    expect(requests?.cpu).toBeDefined();
  });
});

describe('the policy ConfigMap', () => {
  it('holds policy.yaml and node.<name>.yaml keys only, under 1 MiB in all', () => {
    for (const key of Object.keys(configMap.data)) expect(key).toMatch(/^(policy|node\.[a-z0-9]([-a-z0-9.]*[a-z0-9])?)\.yaml$/);
    const size = Object.entries(configMap.data).reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0);
    expect(size).toBeLessThan(1024 * 1024);
  });

  it('has policies that pass `portshaper validate --no-interfaces`', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ps-configmap-'));
    const out: string[] = [];
    const err: string[] = [];
    const stdout = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => (out.push(String(chunk)), true));
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => (err.push(String(chunk)), true));
    try {
      const files = Object.entries(configMap.data).map(([key, text]) => {
        writeFileSync(join(dir, key), text);
        return join(dir, key);
      });
      const code = await runValidate(['--no-interfaces', ...files]);
      stdout.mockRestore();
      stderr.mockRestore();
      expect(code, err.join('')).toBe(0);
      expect(out).toEqual(files.map((f) => `${f}: ok\n`));
      expect(err, 'no warnings either').toEqual([]);
    } finally {
      stdout.mockRestore();
      stderr.mockRestore();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('alerting rules and dashboard', () => {
  const rulesFile = join(ROOT, 'deploy', 'prometheus', 'alerts.yaml');
  const groups = (parse(readFileSync(rulesFile, 'utf8')) as { groups: { rules: { alert: string; expr: string }[] }[] }).groups;
  const exported = exportedMetrics();

  it('pass promtool check rules and promtool test rules', () => {
    const promtool = tool('promtool');
    if (!promtool) return;
    const check = spawnSync(promtool, ['check', 'rules', rulesFile], { encoding: 'utf8' });
    expect(check.status, `${check.stdout}${check.stderr}`).toBe(0);
    const test = spawnSync(promtool, ['test', 'rules', 'alerts.test.yaml'], { cwd: dirname(rulesFile), encoding: 'utf8' });
    expect(test.status, `${test.stdout}${test.stderr}`).toBe(0);
    expect(test.stdout).toMatch(/SUCCESS/);
  });

  it('cover drops rising, an agent down, a rejected policy and drift, and are the groups of the PrometheusRule', () => {
    expect(groups.flatMap((g) => g.rules.map((r) => r.alert))).toEqual(
      expect.arrayContaining(['PortshaperDropsRising', 'PortshaperAgentDown', 'PortshaperPolicyRejected', 'PortshaperPolicyDrift']),
    );
    const rule = find<Obj & { spec: { groups: unknown } }>('PrometheusRule', 'portshaper');
    expect(rule.spec.groups).toEqual(groups);
  });

  it('query only metrics the agent exports (and up)', () => {
    for (const r of groups.flatMap((g) => g.rules)) {
      for (const name of metricsIn(r.expr)) expect(name === 'up' || exported.has(name), `${r.alert}: ${name}`).toBe(true);
    }
    const dashboard = JSON.parse(readFileSync(join(ROOT, 'deploy', 'grafana', 'portshaper-fleet.json'), 'utf8')) as {
      uid: string;
      panels: { title: string; targets: { expr: string }[] }[];
    };
    expect(dashboard.uid).toBe('portshaper-fleet');
    const used = new Set<string>();
    for (const p of dashboard.panels) {
      for (const t of p.targets) {
        for (const name of metricsIn(t.expr)) {
          expect(name === 'up' || exported.has(name), `dashboard panel "${p.title}": ${name}`).toBe(true);
          used.add(name);
        }
      }
    }
    for (const name of ['portshaper_policy_info', 'portshaper_policy_reloads_total', 'portshaper_all_rules_packets_total', 'portshaper_metrics_rules_omitted']) {
      expect(used.has(name), `the dashboard shows ${name}`).toBe(true);
    }
  });
});
