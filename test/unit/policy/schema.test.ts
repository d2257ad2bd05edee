/**
 * docs/policy.schema.json is generated from the key table in src/policy/schema.ts.
 * After changing the table, regenerate it with:
 *   npx vitest run test/unit/policy/schema.test.ts -u
 */
import { describe, expect, it } from 'vitest';
import { policyJsonSchema } from '../../../src/policy/index.js';
import { parseBurst, parseRate, UnitError } from '../../../src/policy/units.js';

const schema = policyJsonSchema();

/** The schema of a key, by property path. */
function keySchema(...path: string[]): Record<string, unknown> {
  let node: Record<string, unknown> = schema;
  for (const key of path) {
    const next = key === '[]' ? node.items : (node.properties as Record<string, unknown>)[key];
    node = next as Record<string, unknown>;
    // A key with a shorthand is anyOf [its bare value, the full mapping]: follow the mapping.
    const full = (node.anyOf as Record<string, unknown>[] | undefined)?.find((s) => s.type === 'object');
    if (full) node = full;
  }
  return node;
}

function accepts(parse: (text: string) => unknown, text: string): boolean {
  try {
    parse(text);
    return true;
  } catch (err) {
    if (err instanceof UnitError) return !/unit|not a|ambiguous|size/.test(err.message);
    throw err;
  }
}

describe('policy JSON Schema', () => {
  it('matches the committed docs/policy.schema.json (regenerate: npx vitest run test/unit/policy/schema.test.ts -u)', async () => {
    await expect(`${JSON.stringify(schema, null, 2)}\n`).toMatchFileSnapshot('../../../docs/policy.schema.json');
  });

  it('is a draft 2020-12 schema that forbids unknown keys at every level', () => {
    expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    for (const path of [[], ['interfaces', '[]'], ['api'], ['api', 'tls'], ['defaults'], ['rules', '[]']]) {
      expect(keySchema(...path).additionalProperties, `additionalProperties of ${path.join('.') || 'root'}`).toBe(false);
    }
    expect(keySchema().required).toEqual(['interfaces']);
    expect(keySchema('api', 'tls').required).toEqual(['cert', 'key']);
  });

  it('gives defaults every rule key except name, port and interfaces', () => {
    const ruleKeys = Object.keys(keySchema('rules', '[]').properties as object);
    const defaultKeys = Object.keys(keySchema('defaults').properties as object);
    expect(defaultKeys).toEqual(ruleKeys.filter((k) => !['name', 'port', 'interfaces'].includes(k)));
  });

  it('carries enums, defaults and bounds from the key table', () => {
    expect(keySchema('rules', '[]', 'protocol')).toMatchObject({ enum: ['tcp', 'udp', 'any'], default: 'any' });
    expect(keySchema('rules', '[]', 'port')).toMatchObject({ type: ['integer', 'string'], minimum: 1, maximum: 65535 });
    expect(keySchema('api', 'listen')).toMatchObject({ default: '127.0.0.1:9180' });
    expect(keySchema('interfaces')).toMatchObject({ type: 'array', minItems: 1 });
  });

  it('has rate and burst patterns that agree with the units parser', () => {
    const rate = new RegExp(String(keySchema('rules', '[]', 'rate').pattern));
    const burst = new RegExp(String(keySchema('rules', '[]', 'burst').pattern));
    for (const text of ['10mbit', '1.5GBIT', '100Mbit/s', '64kibit', 'unlimited', '10mbps', '10MB/s', '10', '10furlongs', 'mbit']) {
      expect(rate.test(text), `rate pattern on "${text}"`).toBe(accepts(parseRate, text));
    }
    for (const text of ['64kb', '64KiB', '10ms', '1s', '3028b', '8kbit', '10', '10mz', 'ms']) {
      expect(burst.test(text), `burst pattern on "${text}"`).toBe(accepts((t) => parseBurst(t, 0), text));
    }
  });
});
