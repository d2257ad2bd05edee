import { describe, expect, it } from 'vitest';
import {
  formatRate,
  MAX_BURST_NS,
  MAX_RATE_BPS,
  MIN_BURST_BYTES,
  MIN_RATE_BPS,
  parseBurst,
  parseDuration,
  parseRate,
  parseSize,
  UnitError,
} from '../../../src/policy/index.js';

function rateError(text: string): string {
  try {
    parseRate(text);
  } catch (err) {
    expect(err, `parseRate("${text}") throws a UnitError`).toBeInstanceOf(UnitError);
    expect((err as UnitError).code).toBe('PS_UNIT_INVALID');
    return (err as Error).message;
  }
  throw new Error(`parseRate("${text}") accepted an invalid rate`);
}

describe('parseRate', () => {
  it.each([
    ['8000bit', 8000],
    ['10kbit', 10_000],
    ['10mbit', 10_000_000],
    ['1gbit', 1e9],
    ['0.4tbit', 4e11],
    ['1.5gbit', 1.5e9],
    ['10kibit', 10_240],
    ['1mibit', 1024 ** 2],
    ['1gibit', 1024 ** 3],
    ['0.25tibit', 0.25 * 1024 ** 4],
    ['100Mbit', 100e6],
    ['100MBIT', 100e6],
    ['100Mbit/s', 100e6],
    ['64kbit/s', 64_000],
    ['2Gbit/s', 2e9],
    ['9000bit/s', 9000],
    ['0.1tbit/s', 1e11],
    [' 10 mbit ', 10e6],
    ['unlimited', 0],
    ['Unlimited', 0],
  ])('reads %s as %d bit/s', (text, bps) => {
    expect(parseRate(text)).toBe(bps);
  });

  it('rounds to whole bits per second', () => {
    expect(parseRate('12.3456kbit')).toBe(12_346);
  });

  it.each([
    ['10mbps', 'ambiguous unit "mbps": tc reads it as megabytes per second (= 80mbit); write "80mbit" for 10 megabytes/s or "10mbit" for 10 megabits/s'],
    ['1000bps', 'ambiguous unit "bps": tc reads it as bytes per second (= 8000bit); write "8000bit" for 1000 bytes/s or "1000bit" for 1000 bits/s'],
    ['10kbps', 'ambiguous unit "kbps": tc reads it as kilobytes per second (= 80kbit); write "80kbit" for 10 kilobytes/s or "10kbit" for 10 kilobits/s'],
    ['1.5Gbps', 'ambiguous unit "Gbps": tc reads it as gigabytes per second (= 12gbit); write "12gbit" for 1.5 gigabytes/s or "1.5gbit" for 1.5 gigabits/s'],
    ['2mibps', 'ambiguous unit "mibps": tc reads it as mebibytes per second (= 16mibit); write "16mibit" for 2 mebibytes/s or "2mibit" for 2 mebibits/s'],
    ['10MB/s', 'ambiguous unit "MB/s": "B" (bytes) and "b" (bits) are easily confused; write "80mbit" for 10 megabytes/s or "10mbit" for 10 megabits/s'],
    ['10Mb/s', 'ambiguous unit "Mb/s": "B" (bytes) and "b" (bits) are easily confused; write "80mbit" for 10 megabytes/s or "10mbit" for 10 megabits/s'],
    ['10kB/s', 'ambiguous unit "kB/s": "B" (bytes) and "b" (bits) are easily confused; write "80kbit" for 10 kilobytes/s or "10kbit" for 10 kilobits/s'],
    ['1GB/s', 'ambiguous unit "GB/s": "B" (bytes) and "b" (bits) are easily confused; write "8gbit" for 1 gigabytes/s or "1gbit" for 1 gigabits/s'],
    ['10mb', '"mb" in "10mb" is a size, not a rate; write "80mbit" for 10 megabytes/s or "10mbit" for 10 megabits/s'],
    ['10k', '"k" in "10k" is a size, not a rate; write "80kbit" for 10 kilobytes/s or "10kbit" for 10 kilobits/s'],
    ['10', 'rate "10" has no unit: add a unit, e.g. 10mbit'],
    ['10mbits', 'unknown rate unit "mbits": did you mean "mbit"?'],
    ['10mibt', 'unknown rate unit "mibt": did you mean "mibit"?'],
    ['10furlongs', 'unknown rate unit "furlongs": use bit, kbit, mbit, gbit, tbit (×1000) or kibit, mibit, gibit, tibit (×1024)'],
    ['fast', '"fast" is not a rate: write a number and a unit, e.g. 10mbit'],
    ['-5mbit', '"-5mbit" is not a rate: write a number and a unit, e.g. 10mbit'],
    ['', '"" is not a rate: write a number and a unit, e.g. 10mbit'],
  ])('rejects %j', (text, message) => {
    expect(rateError(text)).toBe(message);
  });

  it('rejects rates below 8kbit and above 400gbit, saying why', () => {
    expect(rateError('7999bit')).toBe(
      'rate "7999bit" is below the minimum of 8kbit: at lower rates one 64 KiB packet costs more than 60 s of ' +
        'credit; use at least 8kbit, or "unlimited" to count without limiting',
    );
    expect(rateError('0mbit')).toMatch(/^rate "0mbit" is below the minimum of 8kbit/);
    expect(rateError('401gbit')).toBe(
      'rate "401gbit" is above the maximum of 400gbit: credit is kept in whole nanoseconds and a 64-byte frame ' +
        'costs only 1.28 ns at 400gbit, so faster limits lose precision; use "unlimited" to count without limiting',
    );
    expect(parseRate('8kbit')).toBe(MIN_RATE_BPS);
    expect(parseRate('400gbit')).toBe(MAX_RATE_BPS);
  });
});

describe('parseSize', () => {
  it.each([
    ['100b', 100],
    ['64k', 65_536],
    ['64kb', 65_536],
    ['64KB', 65_536],
    ['64kib', 65_536],
    ['1m', 1024 ** 2],
    ['1mb', 1024 ** 2],
    ['1mib', 1024 ** 2],
    ['1g', 1024 ** 3],
    ['1gb', 1024 ** 3],
    ['1gib', 1024 ** 3],
    ['1.5kb', 1536],
    ['80bit', 10],
    ['8kbit', 1024],
    ['8mbit', 1024 ** 2],
    ['8gbit', 1024 ** 3],
  ])('reads %s as %d bytes (tc get_size)', (text, bytes) => {
    expect(parseSize(text)).toBe(bytes);
  });

  it.each([
    ['64', 'size "64" has no unit: add a unit, e.g. 64kb'],
    ['64kbs', 'unknown size unit "kbs": did you mean "kb"?'],
    ['64parsecs', 'unknown size unit "parsecs": use b, kb, mb, gb, kib, mib, gib'],
    ['big', '"big" is not a size: write a number and a unit, e.g. 64kb'],
  ])('rejects %j', (text, message) => {
    expect(() => parseSize(text)).toThrow(new UnitError(message));
  });
});

describe('parseDuration', () => {
  it.each([
    ['5ns', 5],
    ['10us', 10_000],
    ['10ms', 10_000_000],
    ['1.1ms', 1_100_000],
    ['2s', 2e9],
    ['2S', 2e9],
  ])('reads %s as %d ns', (text, ns) => {
    expect(parseDuration(text)).toBe(ns);
  });

  it.each([
    ['10', 'duration "10" has no unit: add a unit, e.g. 10ms'],
    ['10msec', 'unknown duration unit "msec": did you mean "ms"?'],
    ['10fortnights', 'unknown duration unit "fortnights": use ns, us, ms, s'],
  ])('rejects %j', (text, message) => {
    expect(() => parseDuration(text)).toThrow(new UnitError(message));
  });
});

describe('parseBurst', () => {
  it('converts a size to ns of transmission at the rate', () => {
    // 64 KiB at 10 Mbit/s: 65536 * 8 / 1e7 s = 52.4288 ms.
    expect(parseBurst('64kb', 10e6)).toBe(52_428_800);
    // Rounded up, so that the bucket holds at least the bytes asked for.
    expect(parseBurst('64kb', 3e6)).toBe(174_762_667);
  });

  it('takes a time as it is', () => {
    expect(parseBurst('10ms', 100e6)).toBe(10_000_000);
  });

  it('is 0 for an unlimited rate, after checking the syntax', () => {
    expect(parseBurst('1b', 0)).toBe(0);
    expect(() => parseBurst('1', 0)).toThrow('burst "1" has no unit: add a unit, e.g. 64kb or 10ms');
  });

  it('rejects a burst under 2 full-size frames, giving the minimum in bytes and time', () => {
    expect(() => parseBurst('1kb', 1e9)).toThrow(
      new UnitError(
        'burst "1kb" is 1024 bytes at 1gbit, below the minimum of 3028 bytes (24.224us at this rate): a bucket ' +
          'shallower than two full-size frames cannot pass back-to-back packets; use at least 3028b or 24.224us',
      ),
    );
    expect(() => parseBurst('10ms', 1e6)).toThrow(
      'burst "10ms" is 1250 bytes at 1mbit, below the minimum of 3028 bytes (24.224ms at this rate)',
    );
    expect(parseBurst(`${MIN_BURST_BYTES}b`, 1e6)).toBe(24_224_000);
  });

  it('raises a too-shallow burst to the minimum on request (defaults)', () => {
    expect(parseBurst('10ms', 1e6, { raiseToMinimum: true })).toBe(24_224_000);
    expect(parseBurst('10ms', 8000, { raiseToMinimum: true })).toBe(3_028_000_000);
  });

  it('rejects more than 60 s of traffic', () => {
    expect(() => parseBurst('61s', 1e6)).toThrow(
      new UnitError(
        'burst "61s" is 61s of traffic at 1mbit, above the maximum of 60s: a deeper bucket lets a sender exceed ' +
          'the limit for over a minute after idling; use at most 60s',
      ),
    );
    expect(() => parseBurst('1mb', 8000)).toThrow('burst "1mb" is 1048.576s of traffic at 8kbit');
    expect(parseBurst('60s', 8000)).toBe(MAX_BURST_NS);
  });

  it('names both kinds of unit when the unit is unknown', () => {
    expect(() => parseBurst('10mz', 1e6)).toThrow('unknown burst unit "mz": did you mean "m"?');
    expect(() => parseBurst('10lightyears', 1e6)).toThrow(
      'unknown burst unit "lightyears": use a size (b, kb, mb, kib, mib) or a duration (ns, us, ms, s)',
    );
  });
});

describe('formatRate', () => {
  it.each([
    [0, 'unlimited'],
    [500, '500bit'],
    [8000, '8kbit'],
    [1536, '1.536kbit'],
    [100e6, '100mbit'],
    [1.5e9, '1.5gbit'],
    [4e11, '400gbit'],
    [2e12, '2tbit'],
  ])('shows %d bit/s as %s', (bps, text) => {
    expect(formatRate(bps)).toBe(text);
  });

  it('round-trips through parseRate', () => {
    for (const bps of [8000, 64_000, 10e6, 2.5e9, 4e11]) expect(parseRate(formatRate(bps))).toBe(bps);
  });
});
