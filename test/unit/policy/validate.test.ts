import { describe, expect, it } from 'vitest';
import { lines, problems, validate, withRules } from './helpers.js';

describe('validatePolicy: YAML and types', () => {
  it('reports YAML syntax errors at their position', () => {
    expect(problems(lines('interfaces:', '  - name: lo', 'interfaces: [{ name: eth0 }]'))).toEqual([
      '3:1 YAML: Map keys must be unique',
    ]);
    expect(problems(lines('interfaces: [{ name: lo }', 'rules: []'))).toContainEqual(
      expect.stringMatching(/^2:1 YAML: /),
    );
  });

  it('reports a document that is not a mapping', () => {
    expect(problems(lines('- name: lo'))).toEqual(['1:1 policy: expected a mapping (key: value), got a list']);
  });

  it('reports an empty file as missing its interfaces', () => {
    expect(problems('')).toEqual([
      '1:1 policy: missing required key "interfaces"; list at least one interface, e.g. "- name: eth0"',
    ]);
  });

  it('reports wrong types at the value', () => {
    expect(
      problems(
        lines(
          'interfaces:',
          '  - name: lo',
          '    ingress: yes',
          '  - [eth0]',
          'api:',
          '  readsOpen: 1',
          'rules:',
          '  port: 80',
        ),
      ),
    ).toEqual([
      '3:14 interfaces[0].ingress: expected true or false, got the string "yes"',
      '4:5 interfaces[1]: expected a mapping (key: value), got a list',
      '6:14 api.readsOpen: expected true or false, got the number 1',
      '8:3 rules: expected a list, got a mapping',
    ]);
  });

  it('points at the key when a value is missing', () => {
    expect(problems(lines('interfaces:', '  - name:', 'pinDir:'))).toEqual([
      '2:5 interfaces[0].name: expected a string, got nothing; interface names are 1 to 15 characters without "/", ":" or spaces',
      '3:1 pinDir: expected a string, got nothing; write an absolute path, starting with "/"',
    ]);
  });

  it('accepts emptied optional sections', () => {
    expect(problems(lines('interfaces:', '  - name: lo', 'api:', 'defaults:', 'rules:'))).toEqual([]);
  });

  it('follows YAML aliases', () => {
    const result = validate(
      withRules('  - port: 80', '    rate: &fast 1gbit', '  - port: 443', '    rate: *fast'),
    );
    expect(result.diagnostics).toEqual([]);
    expect(result.policy?.rules.map((r) => r.rateBps)).toEqual([1e9, 1e9]);
  });
});

describe('validatePolicy: keys', () => {
  it('reports unknown keys at every level, with did-you-mean', () => {
    expect(
      problems(
        lines(
          'interface:',
          '  - name: lo',
          'interfaces:',
          '  - name: lo',
          '    egres: false',
          'api:',
          '  listn: 127.0.0.1:9180',
          '  tls:',
          '    cert: /c',
          '    key: /k',
          '    chain: /x',
          'defaults:',
          '  rat: 1mbit',
          'rules:',
          '  - port: 80',
          '    rate: 1mbit',
          '    direcion: ingress',
          '    color: blue',
        ),
      ),
    ).toEqual([
      '1:1 interface: unknown key; did you mean "interfaces"?',
      '5:5 interfaces[0].egres: unknown key; did you mean "egress"?',
      '7:3 api.listn: unknown key; did you mean "listen"?',
      '11:5 api.tls.chain: unknown key; valid keys are cert, key',
      '13:3 defaults.rat: unknown key; did you mean "rate"?',
      '17:5 rules[0].direcion: unknown key; did you mean "direction"?',
      '18:5 rules[0].color: unknown key; valid keys are name, port, protocol, direction, side, rate, burst, mode, ecn, horizon, pps, connections, client, interfaces, buckets',
    ]);
  });

  it('says that name, port and interfaces cannot have defaults', () => {
    expect(
      problems(lines('interfaces:', '  - name: lo', 'defaults:', '  port: 80', '  interfaces: [lo]')),
    ).toEqual([
      '4:3 defaults.port: "port" cannot have a default; set it on each rule',
      '5:3 defaults.interfaces: "interfaces" cannot have a default; set it on each rule',
    ]);
  });

  it('reports enum values with did-you-mean', () => {
    expect(
      problems(
        withRules('  - port: 80', '    rate: 1mbit', '    protocol: tpc', '    direction: in', '    mode: shaping'),
      ),
    ).toEqual([
      '6:15 rules[0].protocol: "tpc" is not one of tcp, udp, any; did you mean "tcp"?',
      '7:16 rules[0].direction: "in" is not one of ingress, egress, both',
      '8:11 rules[0].mode: "shaping" is not one of shape, police, monitor, enforce',
    ]);
  });

  it('reports missing required keys at the enclosing mapping', () => {
    expect(problems(lines('interfaces:', '  - ingress: true', 'rules:', '  - rate: 1mbit', '  - port: 80'))).toEqual([
      '2:5 interfaces[0]: missing required key "name"; interface names are 1 to 15 characters without "/", ":" or spaces',
      '4:5 rules[0]: missing required key "port"; write a port 1..65535 or a range such as "30000-30999"',
      '5:5 rules[1]: missing required key "rate"; set it on the rule or in defaults, e.g. rate: 10mbit (or "unlimited" to count only)',
    ]);
  });

  it('reports an empty interface list', () => {
    expect(problems(lines('interfaces: []'))).toEqual([
      '1:13 interfaces: the list is empty; list at least one interface, e.g. "- name: eth0"',
    ]);
  });

  it('checks patterns: interface names, rule names, paths, listen', () => {
    expect(
      problems(
        lines(
          'pinDir: sys/fs/bpf',
          'interfaces:',
          '  - name: a-very-long-interface-name',
          '  - name: lo',
          'api:',
          '  listen: localhost',
          '  tokenFile: token',
          'rules:',
          '  - name: Web',
          '    port: 80',
          '    rate: 1mbit',
        ),
      ),
    ).toEqual([
      '1:9 pinDir: "sys/fs/bpf" is not valid; write an absolute path, starting with "/"',
      '3:11 interfaces[0].name: "a-very-long-interface-name" is not valid; interface names are 1 to 15 characters without "/", ":" or spaces',
      '6:11 api.listen: "localhost" is not valid; write host:port such as "127.0.0.1:9180" or "[::1]:9180"',
      '7:14 api.tokenFile: "token" is not valid; write an absolute path, starting with "/"',
      '9:11 rules[0].name: "Web" is not valid; use 1 to 63 lower-case letters, digits, ".", "_" or "-", starting with a letter or digit',
    ]);
  });

  it('checks the listen address', () => {
    const listen = (value: string) => problems(lines('interfaces:', '  - name: lo', 'api:', `  listen: "${value}"`));
    expect(listen('[::1]:9180')).toEqual([]);
    expect(listen('localhost:9180')).toEqual([]);
    expect(listen('0.0.0.0:9180')).toEqual([]);
    expect(listen('127.0.0.1:0')).toEqual(['4:11 api.listen: port 0 in "127.0.0.1:0" is out of range 1..65535']);
    expect(listen('[::1]:99999')).toEqual(['4:11 api.listen: port 99999 in "[::1]:99999" is out of range 1..65535']);
    expect(listen('300.1.1.1:80')).toEqual(['4:11 api.listen: "300.1.1.1" in "300.1.1.1:80" is not an IPv4 address']);
    expect(listen('[1.2.3.4]:80')).toEqual(['4:11 api.listen: "1.2.3.4" in "[1.2.3.4]:80" is not an IPv6 address']);
  });

  it('requires both tls cert and key, or neither', () => {
    const tls = (...body: string[]) => problems(lines('interfaces:', '  - name: lo', 'api:', '  tls:', ...body));
    expect(tls('    cert: /etc/ps.crt')).toEqual(['5:5 api.tls: missing required key "key"; tls needs both cert and key']);
    expect(tls('    key: /etc/ps.key')).toEqual(['5:5 api.tls: missing required key "cert"; tls needs both cert and key']);
    expect(tls('    cert: /etc/ps.crt', '    key: /etc/ps.key')).toEqual([]);
  });
});

describe('validatePolicy: ports', () => {
  it.each([
    ['0', '4:11 rules[0].port: 0 is out of range 1..65535'],
    ['65536', '4:11 rules[0].port: 65536 is out of range 1..65535'],
    ['80.5', '4:11 rules[0].port: expected a whole number or a string, got the number 80.5; write a port 1..65535 or a range such as "30000-30999"'],
    ['"30999-30000"', '4:11 rules[0].port: the range "30999-30000" is reversed; write "30000-30999"'],
    ['"0-100"', '4:11 rules[0].port: 0 in "0-100" is out of range 1..65535'],
    ['"65000-70000"', '4:11 rules[0].port: 70000 in "65000-70000" is out of range 1..65535'],
    ['http', '4:11 rules[0].port: "http" is not valid; write a port 1..65535 or a range such as "30000-30999"'],
    ['"80-"', '4:11 rules[0].port: "80-" is not valid; write a port 1..65535 or a range such as "30000-30999"'],
  ])('rejects port %s', (port, problem) => {
    expect(problems(withRules(`  - port: ${port}`, '    rate: 1mbit'))).toEqual([problem]);
  });

  it('accepts a single port written as a string, and a one-port range', () => {
    const { policy } = validate(withRules('  - port: "8080"', '    rate: 1mbit', '  - port: "9000-9000"', '    rate: 1mbit'));
    expect(policy?.rules.map((r) => [r.name, r.from, r.to])).toEqual([
      ['any-8080', 8080, 8080],
      ['any-9000-9000', 9000, 9000],
    ]);
  });

  it('rejects buckets on a single port', () => {
    expect(problems(withRules('  - port: 80', '    rate: 1mbit', '    buckets: per-port'))).toEqual([
      '6:5 rules[0].buckets: only a port range has per-port buckets; remove "buckets" or make port a range such as "80-89"',
    ]);
  });

  it('applies buckets from defaults to ranges only', () => {
    const { policy, diagnostics } = validate(
      lines(
        'interfaces: [{ name: lo }]',
        'defaults: { buckets: per-port, rate: 1mbit }',
        'rules:',
        '  - port: 80',
        '  - port: "1000-1009"',
      ),
    );
    expect(diagnostics).toEqual([]);
    expect(policy?.rules.map((r) => r.perPort)).toEqual([false, true]);
  });
});

describe('validatePolicy: rates and bursts', () => {
  it('reports unit problems at the value', () => {
    expect(
      problems(
        withRules(
          '  - port: 80',
          '    rate: 10mbps',
          '  - port: 81',
          '    rate: 100',
          '  - port: 82',
          '    rate: 1mbit',
          '    burst: 1kb',
          '  - port: 83',
          '    rate: 1gbit',
          '    burst: 90s',
        ),
      ),
    ).toEqual([
      '5:11 rules[0].rate: ambiguous unit "mbps": tc reads it as megabytes per second (= 80mbit); write "80mbit" for 10 megabytes/s or "10mbit" for 10 megabits/s',
      '7:11 rules[1].rate: rate "100" has no unit: add a unit, e.g. 10mbit',
      '10:12 rules[2].burst: burst "1kb" is 1024 bytes at 1mbit, below the minimum of 3028 bytes (24.224ms at this rate): a bucket shallower than two full-size frames cannot pass back-to-back packets; use at least 3028b or 24.224ms',
      '13:12 rules[3].burst: burst "90s" is 90s of traffic at 1gbit, above the maximum of 60s: a deeper bucket lets a sender exceed the limit for over a minute after idling; use at most 60s',
    ]);
  });

  it('rejects rates out of range at the value, in rules and defaults', () => {
    expect(
      problems(lines('interfaces: [{ name: lo }]', 'defaults:', '  rate: 1kbit', 'rules:', '  - port: 80', '    rate: 1tbit')),
    ).toEqual([
      '3:9 defaults.rate: rate "1kbit" is below the minimum of 8kbit: at lower rates one 64 KiB packet costs more than 60 s of credit; use at least 8kbit, or "unlimited" to count without limiting',
      '6:11 rules[0].rate: rate "1tbit" is above the maximum of 400gbit: credit is kept in whole nanoseconds and a 64-byte frame costs only 1.28 ns at 400gbit, so faster limits lose precision; use "unlimited" to count without limiting',
    ]);
  });

  it('takes rate and burst from defaults, raising a default burst to the minimum', () => {
    const { policy, diagnostics } = validate(
      lines('interfaces: [{ name: lo }]', 'defaults: { rate: 1mbit, burst: 10ms }', 'rules:', '  - port: 80', '  - port: 81', '    rate: 1gbit'),
    );
    expect(diagnostics).toEqual([]);
    expect(policy?.rules.map((r) => [r.rateBps, r.burstNs])).toEqual([
      [1e6, 24_224_000],
      [1e9, 10_000_000],
    ]);
  });

  it('uses 300ms, at least 2 full-size frames, when no burst is set', () => {
    const { policy } = validate(withRules('  - port: 80', '    rate: 100mbit', '  - port: 81', '    rate: 8kbit'));
    expect(policy?.rules.map((r) => r.burstNs)).toEqual([300_000_000, 3_028_000_000]);
  });

  it('reports a default burst too deep for a rule at the default, naming the rule', () => {
    expect(
      problems(lines('interfaces: [{ name: lo }]', 'defaults:', '  burst: 1mb', 'rules:', '  - port: 80', '    rate: 8kbit')),
    ).toEqual([
      '3:10 defaults.burst: for the rule at line 5 (rate 8kbit): burst "1mb" is 1048.576s of traffic at 8kbit, above the maximum of 60s: a deeper bucket lets a sender exceed the limit for over a minute after idling; use at most 60s; or set burst on that rule',
    ]);
  });

  it('warns that a burst does nothing with rate: unlimited', () => {
    const { policy, diagnostics } = validate(withRules('  - port: 80', '    rate: unlimited', '    burst: 64kb'));
    expect(diagnostics.map((d) => [d.line, d.column, d.severity, d.message])).toEqual([
      [6, 5, 'warning', 'rules[0].burst: a burst has no effect with rate: unlimited; remove it'],
    ]);
    expect(policy?.rules[0]).toMatchObject({ rateBps: 0, burstNs: 0 });
  });
});
