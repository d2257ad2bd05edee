/**
 * Bearer-token authentication: the token lives in a file (api.tokenFile),
 * created with 32 random bytes, mode 0600, on the agent's first start.
 * Tokens are compared in constant time, on SHA-256 digests so that the
 * lengths compared are always equal (timingSafeEqual throws otherwise, and
 * an early length check would reveal the token's length).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { ApiTokenError } from '../errors.js';

/** Checks Authorization headers against one token. */
export class TokenCheck {
  private readonly digest: Buffer;

  constructor(token: string) {
    this.digest = sha256(token);
  }

  /** True when the header is "Bearer <the token>". */
  accepts(header: string | undefined): boolean {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
    // Hash even when the header is malformed, so every refusal costs the same.
    const offered = sha256(m?.[1] ?? '');
    return timingSafeEqual(offered, this.digest) && m !== null;
  }
}

/** Read the token file, creating it (and its directory) when missing; `created` says whether it was. */
export function loadOrCreateToken(file: string): { token: string; created: boolean } {
  try {
    const token = readFileSync(file, 'utf8').trim();
    if (!token) throw new ApiTokenError(file, 'the file is empty; delete it and the agent creates a new token');
    return { token, created: false };
  } catch (err) {
    if (err instanceof ApiTokenError) throw err;
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new ApiTokenError(file, (err as Error).message);
  }
  const token = randomBytes(32).toString('hex');
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    // "wx": never overwrite a token another process has just created.
    writeFileSync(file, `${token}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return loadOrCreateToken(file);
    throw new ApiTokenError(file, (err as Error).message);
  }
  return { token, created: true };
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
