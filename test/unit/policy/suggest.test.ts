import { describe, expect, it } from 'vitest';
import { didYouMean } from '../../../src/policy/suggest.js';

describe('didYouMean', () => {
  const keys = ['name', 'port', 'protocol', 'direction', 'side', 'rate', 'burst', 'mode', 'interfaces', 'buckets'];

  it.each([
    ['direcion', 'direction'],
    ['Direction', 'direction'],
    ['protcol', 'protocol'],
    ['interface', 'interfaces'],
    ['bucket', 'buckets'],
    ['rat', 'rate'],
  ])('suggests %s → %s', (word, expected) => {
    expect(didYouMean(word, keys)).toBe(expected);
  });

  it('suggests nothing further than 2 edits away, or for a complete rewrite', () => {
    expect(didYouMean('colour', keys)).toBeUndefined();
    expect(didYouMean('xy', ['s'])).toBeUndefined();
  });
});
