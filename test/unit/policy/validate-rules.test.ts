import { describe, expect, it } from 'vitest';
import { formatDiagnostic } from '../../../src/errors.js';
import { lines, problems, validate, withRules } from './helpers.js';

describe('validatePolicy: names', () => {
  it('derives names from protocol and ports', () => {
    const { policy } = validate(
      withRules(
        '  - { port: 8080, protocol: tcp, rate: 1mbit }',
        '  - { port: "30000-30999", rate: 1mbit }',
        '  - { port: 53, protocol: udp, rate: 1mbit }',
        '  - { name: web, port: 443, rate: 1mbit }',
      ),
    );
    expect(policy?.rules.map((r) => r.name)).toEqual(['tcp-8080', 'any-30000-30999', 'udp-53', 'web']);
  });

  it('rejects duplicate names on the second rule, naming the first', () => {
    expect(
      problems(
        withRules(
          '  - name: web',
          '    port: 80',
          '    rate: 1mbit',
          '  - name: web',
          '    port: 443',
          '    rate: 1mbit',
        ),
      ),
    ).toEqual(['7:11 rules[1].name: "web" is already used by the rule at line 4; rule names must be unique']);
  });

  it('rejects two rules that derive the same name, pointing at the port', () => {
    expect(
      problems(
        withRules(
          '  - port: 80',
          '    direction: ingress',
          '    rate: 1mbit',
          '  - port: 80',
          '    direction: egress',
          '    rate: 1mbit',
        ),
      ),
    ).toEqual([
      '7:11 rules[1]: the derived name "any-80" is already the name derived for the rule at line 4; give one of them a name',
    ]);
  });

  it('rejects a name that another rule derived', () => {
    expect(
      problems(withRules('  - { port: 80, direction: ingress, rate: 1mbit }', '  - { name: any-80, port: 81, rate: 1mbit }')),
    ).toEqual([
      '5:13 rules[1].name: "any-80" is already the name derived for the rule at line 4; rule names must be unique',
    ]);
  });
});

describe('validatePolicy: interfaces', () => {
  it('warns, without failing, about an interface that does not exist yet', () => {
    const { policy, diagnostics } = validate(lines('interfaces:', '  - name: veth7', 'rules: []'));
    expect(diagnostics.map(formatDiagnostic)).toEqual([
      'policy.yaml:2:11: warning: interfaces[0].name: interface "veth7" does not exist (yet); the agent will attach when it appears',
    ]);
    expect(policy?.interfaces).toEqual([{ name: 'veth7', ingress: true, egress: true, replaceQdisc: false, countUnmatched: false }]);
  });

  it('warns about an interface with no hook enabled', () => {
    expect(problems(lines('interfaces:', '  - name: lo', '    ingress: false', '    egress: false'))).toEqual([
      '2:5 warning: interfaces[0]: ingress and egress are both false, so nothing is attached to "lo"; enable one or remove the interface',
    ]);
  });

  it('rejects an interface listed twice', () => {
    expect(problems(lines('interfaces:', '  - name: lo', '  - name: eth0', '  - name: lo'))).toEqual([
      '4:11 interfaces[2].name: "lo" is already listed at line 2; list each interface once',
    ]);
  });

  it('rejects a rule interface that is not listed at the top level', () => {
    expect(
      problems(
        lines(
          'interfaces:',
          '  - name: eth0',
          '  - name: eth1',
          'rules:',
          '  - port: 80',
          '    rate: 1mbit',
          '    interfaces: [eth1, eht0, wlan0]',
        ),
      ),
    ).toEqual([
      '7:24 rules[0].interfaces[1]: "eht0" is not one of the top-level interfaces (eth0, eth1); did you mean "eth0"?',
      '7:30 rules[0].interfaces[2]: "wlan0" is not one of the top-level interfaces (eth0, eth1); add it to interfaces: or remove it here',
    ]);
  });

  it('rejects an empty rule interface list', () => {
    expect(problems(withRules('  - port: 80', '    rate: 1mbit', '    interfaces: []'))).toEqual([
      '6:17 rules[0].interfaces: the list is empty; list one or more interfaces, e.g. [eth0]',
    ]);
  });

  it('rejects a fifth rule profile, explaining the limit', () => {
    const ifaces = ['lo', 'eth0', 'eth1', 'eth2', 'eth3', 'eth4'];
    const text = lines(
      'interfaces:',
      ...ifaces.map((name) => `  - name: ${name}`),
      'rules:',
      // eth0..eth3 each get a rule of their own: with lo (no rules but the shared one) that is 5 sets.
      '  - { port: 1, rate: 1mbit }',
      ...['eth0', 'eth1', 'eth2', 'eth3', 'eth4'].map(
        (name, i) => `  - { port: ${100 + i}, rate: 1mbit, interfaces: [${name === 'eth4' ? 'eth3' : name}] }`,
      ),
    );
    expect(problems(text)).toEqual([
      '6:11 interfaces[4].name: the rules give the interfaces 5 different rule sets, but the data plane holds 4 ' +
        '(PS_MAX_PROFILES) and "eth3" would need another; interfaces share a set only when exactly the same rules ' +
        'apply to them, so restrict fewer rules with "interfaces:"',
    ]);
  });
});

describe('validatePolicy: overlapping rules', () => {
  const overlap = (...ruleLines: string[]) =>
    problems(lines('interfaces:', '  - name: eth0', '  - name: eth1', 'rules:', ...ruleLines));

  it('rejects the second of two rules on the same port, naming the first and its line', () => {
    expect(overlap('  - { name: a, port: 80, protocol: tcp, rate: 1mbit }', '  - { name: b, port: 80, protocol: tcp, rate: 2mbit }')).toEqual([
      '6:22 rules[1].port: overlaps rule "a" (line 5): both match tcp port 80 ingress (local side) on eth0; a port ' +
        'belongs to at most one rule per protocol, direction and side, so change the ports, protocol, direction, side ' +
        'or interfaces of one of them',
    ]);
  });

  it('treats protocol any as overlapping tcp and udp', () => {
    expect(
      overlap('  - { name: a, port: "1000-2000", protocol: udp, rate: 1mbit }', '  - { name: b, port: 1500, rate: 1mbit }'),
    ).toEqual([expect.stringMatching(/^6:22 rules\[1\]\.port: overlaps rule "a" \(line 5\): both match udp port 1500 ingress/)]);
  });

  it('names the lowest common port and the earliest rule overlapped', () => {
    expect(
      overlap(
        '  - { name: a, port: "100-200", rate: 1mbit, direction: egress }',
        '  - { name: b, port: "50-60", rate: 1mbit }',
        '  - { name: c, port: "55-150", rate: 1mbit }',
      ),
    ).toEqual([expect.stringMatching(/^7:22 rules\[2\]\.port: overlaps rule "a" \(line 5\): both match tcp port 100 egress/)]);
  });

  it('treats direction both as overlapping each direction', () => {
    expect(
      overlap('  - { name: a, port: 80, direction: egress, rate: 1mbit }', '  - { name: b, port: 80, rate: 1mbit }'),
    ).toEqual([expect.stringMatching(/^6:22 rules\[1\]\.port: overlaps rule "a" \(line 5\): both match tcp port 80 egress/)]);
  });

  it('allows the same port for other protocols, directions, sides or interfaces', () => {
    expect(
      overlap(
        '  - { name: a, port: 80, protocol: tcp, rate: 1mbit }',
        '  - { name: b, port: 80, protocol: udp, rate: 1mbit }',
        '  - { name: c, port: 443, direction: ingress, rate: 1mbit }',
        '  - { name: d, port: 443, direction: egress, rate: 1mbit }',
        '  - { name: e, port: 8080, rate: 1mbit }',
        '  - { name: f, port: 8080, side: remote, rate: 1mbit }',
        '  - { name: g, port: 9090, interfaces: [eth0], rate: 1mbit }',
        '  - { name: h, port: 9090, interfaces: [eth1], rate: 1mbit }',
      ),
    ).toEqual([]);
  });

  it('rejects rules that share only one interface, naming it', () => {
    expect(
      overlap(
        '  - { name: a, port: 9090, interfaces: [eth1], rate: 1mbit }',
        '  - { name: b, port: "9000-9999", interfaces: [eth0, eth1], rate: 1mbit }',
      ),
    ).toEqual([expect.stringMatching(/^6:22 rules\[1\]\.port: overlaps rule "a" \(line 5\): both match tcp port 9090 ingress \(local side\) on eth1;/)]);
  });
});

describe('validatePolicy: shaping', () => {
  it('rejects more shaped buckets than a device has HTB classes (16-bit class ids)', () => {
    expect(
      problems(
        withRules(
          '  - { port: "1-40000", protocol: tcp, direction: egress, buckets: per-port, rate: 1mbit }',
          '  - { port: "1-40000", protocol: udp, direction: egress, buckets: per-port, rate: 1mbit }',
        ),
      ),
    ).toEqual([
      '5:5 rules[1]: this rule brings the number of shaped buckets to 80000, more than the 65533 HTB classes a ' +
        'device can hold (16-bit class ids); use buckets: shared for large ranges, or mode: police for some rules',
    ]);
  });

  it('warns that an explicit shape on ingress polices; reads enforce as police', () => {
    const { policy, diagnostics } = validate(
      withRules('  - { port: 80, direction: ingress, rate: 1mbit, mode: shape }', '  - { port: 81, rate: 1mbit, mode: enforce }'),
    );
    expect(diagnostics.map(formatDiagnostic)).toEqual([
      expect.stringMatching(/^policy\.yaml:4:56: warning: rules\[0\]\.mode: ingress has no queue to shape in, so this rule polices/),
    ]);
    expect(policy?.rules.map((r) => r.mode)).toEqual(['shape', 'police']);
  });

  it('checks ecn and horizon: delays, "off" and false for ecn, a bounded horizon', () => {
    expect(
      problems(
        withRules(
          '  - { port: 80, rate: 1mbit, ecn: 5 }',
          '  - { port: 81, rate: 1mbit, ecn: sometimes }',
          '  - { port: 82, rate: 1mbit, horizon: off }',
          '  - { port: 83, rate: 1mbit, horizon: 20s }',
          '  - { port: 84, rate: 1mbit, ecn: false, horizon: 5ms }',
          '  - { port: 85, rate: 1mbit, ecn: OFF }',
        ),
      ),
    ).toEqual([
      '4:35 rules[0].ecn: duration "5" has no unit: add a unit, e.g. 10ms',
      '5:35 rules[1].ecn: "sometimes" is not a duration: write a number and a unit, e.g. 10ms',
      expect.stringMatching(/^6:39 rules\[2\]\.horizon: "off" is not a delay from 1ms to 10s; a shaper needs a bound/),
      expect.stringMatching(/^7:39 rules\[3\]\.horizon: "20s" is not a delay from 1ms to 10s/),
    ]);
  });
});

describe('validatePolicy: packet, connection and per-client limits', () => {
  it('reads pps and connections in their units, and refuses bit rates, missing units and the wrong protocol or direction', () => {
    expect(
      problems(
        withRules(
          '  - { port: 80, rate: 1mbit, pps: 10mbit }',
          '  - { port: 81, rate: 1mbit, pps: 100 }',
          '  - { port: 82, protocol: udp, rate: 1mbit, connections: 10/s }',
          '  - { port: 83, protocol: tcp, direction: egress, rate: 1mbit, connections: 10/min }',
          '  - { port: 84, protocol: tcp, rate: 1mbit, connections: 10/hour }',
          '  - { port: 85, protocol: tcp, rate: 1mbit, pps: 1kpps, connections: 600/min }',
        ),
      ),
    ).toEqual([
      '4:35 rules[0].pps: "10mbit" is a bit rate; a packet rate counts packets: write it in pps, kpps or mpps, e.g. 10kpps (rate: takes bit rates)',
      '5:35 rules[1].pps: packet rate "100" has no unit: add a unit, e.g. 10kpps',
      '6:58 rules[2].connections: a connection limit counts TCP SYNs, and this rule is protocol: udp; use pps for UDP',
      '7:77 rules[3].connections: new connections are limited where their SYN arrives (ingress); set direction: ingress or both',
      '8:58 rules[4].connections: unknown connection rate unit "/hour": use /s or /min, e.g. 100/s',
    ]);
  });

  it('needs a limit in client:, and checks its keys', () => {
    expect(
      problems(
        withRules(
          '  - { port: 80, rate: 1mbit, client: { ipv6Prefix: 48 } }',
          '  - { port: 81, rate: 1mbit, client: { rate: 1mbit, ipv6Prefix: 129 } }',
          '  - { port: 82, rate: 1mbit, client: { rat: 1mbit } }',
        ),
      ),
    ).toEqual([
      '4:38 rules[0].client: give each client a rate, pps or connections limit, e.g. rate: 10mbit',
      '5:65 rules[1].client.ipv6Prefix: 129 is out of range 1..128',
      '6:40 rules[2].client.rat: unknown key; did you mean "rate"?',
    ]);
  });
});

describe('validatePolicy: capacity', () => {
  it('rejects more buckets than the data plane holds', () => {
    expect(
      problems(
        withRules(
          '  - { port: "1-65535", protocol: tcp, buckets: per-port, rate: 1mbit, mode: police }',
          '  - { port: "1-65535", protocol: udp, buckets: per-port, rate: 1mbit, mode: police }',
          '  - { port: "1-65535", protocol: tcp, side: remote, buckets: per-port, rate: 1mbit, name: out, mode: police }',
        ),
      ),
    ).toEqual([
      '6:5 rules[2]: this rule brings the number of token buckets to 393210, more than the data plane\'s 262143 ' +
        '(PS_MAX_SLOTS - 1); use buckets: shared for large ranges, or fewer rules',
    ]);
  });
});

describe('validatePolicy: every problem at once', () => {
  it('reports all errors and warnings of a policy together, in file order', () => {
    const { policy, diagnostics } = validate(
      lines(
        'pinDir: bpf',
        'interfaces:',
        '  - name: wlan9',
        '    ingres: true',
        'api:',
        '  tls: { cert: /c }',
        'rules:',
        '  - port: 0',
        '    rate: 10mbps',
        '  - name: x',
        '    port: 80',
        '    rate: 1mbit',
        '    protocl: tcp',
        '  - name: x',
        '    port: 80',
        '    rate: 1mbit',
        '    buckets: shared',
      ),
    );
    expect(policy).toBeUndefined();
    expect(diagnostics.map((d) => `${d.line}:${d.column} ${d.severity}`)).toEqual([
      '1:9 error', // pinDir is not absolute
      '3:11 warning', // wlan9 does not exist
      '4:5 error', // ingres
      '6:8 error', // tls without key
      '8:11 error', // port 0
      '9:11 error', // mbps
      '13:5 error', // protocl
      '14:11 error', // duplicate name; no overlap: the first "x" has an error of its own
      '17:5 error', // buckets on a single port
    ]);
  });
});

describe('validatePolicy: interfaces written as bare names', () => {
  it('reads [lo, veth9] and "- lo" as "- name: lo", with positions for a bad name', () => {
    const { policy, diagnostics } = validate(lines('interfaces: [lo, veth9]', 'rules: []'));
    expect(diagnostics.map(formatDiagnostic)).toEqual([
      'policy.yaml:1:18: warning: interfaces[1].name: interface "veth9" does not exist (yet); the agent will attach when it appears',
    ]);
    expect(policy?.interfaces.map((i) => [i.name, i.ingress, i.egress])).toEqual([
      ['lo', true, true],
      ['veth9', true, true],
    ]);
    expect(problems(lines('interfaces:', '  - lo', '  - "bad/name"'))).toEqual([
      '3:5 interfaces[1].name: "bad/name" is not valid; interface names are 1 to 15 characters without "/", ":" or spaces',
    ]);
  });
});
