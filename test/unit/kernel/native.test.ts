/** The shared-library loader: an override is the only path tried; a failed search lists every path with its reason. */
import { describe, expect, it } from 'vitest';
import { LibraryNotFoundError } from '../../../src/errors.js';
import { LIBBPF, loadLibrary, type LibrarySpec } from '../../../src/kernel/native.js';

const BOGUS: LibrarySpec = { ...LIBBPF, candidates: ['libportshaper-none.so.1', '/nonexistent/libportshaper-none.so.1'] };

function loadError(spec: LibrarySpec, env: NodeJS.ProcessEnv): LibraryNotFoundError {
  try {
    loadLibrary(spec, env);
  } catch (err) {
    expect(err, 'loadLibrary throws a LibraryNotFoundError').toBeInstanceOf(LibraryNotFoundError);
    return err as LibraryNotFoundError;
  }
  throw new Error('loadLibrary loaded a library that does not exist');
}

describe('loadLibrary', () => {
  it('lists every candidate tried, with its reason, and says how to install the library', () => {
    const err = loadError(BOGUS, {});
    expect(err.code).toBe('PS_LIBBPF_NOT_FOUND');
    expect(err.tried.map((t) => t.path)).toEqual(BOGUS.candidates);
    for (const t of err.tried) expect(err.message).toContain(`    ${t.path}: ${t.reason}`);
    expect(err.hint).toBe(`${LIBBPF.install}, or set PORTSHAPER_LIBBPF to the path of libbpf.so.1`);
  });

  it('tries only the override when PORTSHAPER_LIBBPF is set, even though a candidate would load', () => {
    // libc.so.6 loads on any glibc host: had the loader fallen back to the list, this would succeed.
    const err = loadError({ ...LIBBPF, candidates: ['libc.so.6'] }, { PORTSHAPER_LIBBPF: '/nonexistent/libbpf.so.1' });
    expect(err.tried.map((t) => t.path)).toEqual(['/nonexistent/libbpf.so.1']);
    expect(err.message).toMatch(/^could not load libbpf from PORTSHAPER_LIBBPF; tried:\n {4}\/nonexistent\/libbpf\.so\.1: /);
    expect(err.hint).toBe('set PORTSHAPER_LIBBPF to the path of libbpf.so.1, or unset it to search libc.so.6');
  });
});
