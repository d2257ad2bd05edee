/**
 * Addresses for people: IPv4 dotted, IPv6 in RFC 5952 short form. One
 * formatter for the socket table (api) and the client table (kernel).
 */

/** 16 bytes of an IPv6 address in RFC 5952 form: lower case, the longest run of two or more zero groups as "::" (the first on a tie). */
export function formatIpv6(addr: Uint8Array): string {
  const groups = Array.from({ length: 8 }, (_, i) => ((addr[2 * i] ?? 0) << 8) | (addr[2 * i + 1] ?? 0));
  let best = { at: -1, len: 0 };
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > best.len) best = { at: i, len: j - i };
    i = j > i ? j : i + 1;
  }
  const hexes = groups.map((g) => g.toString(16));
  if (best.len < 2) return hexes.join(':');
  return `${hexes.slice(0, best.at).join(':')}::${hexes.slice(best.at + best.len).join(':')}`;
}
