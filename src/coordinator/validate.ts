import { HttpError } from './errors.ts';

/**
 * Checks of untrusted JSON: each returns the value typed or throws an HttpError (badRequest) naming the field and
 * what was wrong with it, which the API sends back as the 400's reason.
 */

export type Json = Record<string, unknown>;

const show = (v: unknown): string => {
  const s =
    typeof v === 'string'
      ? JSON.stringify(v)
      : typeof v === 'object' && v !== null
        ? Array.isArray(v)
          ? 'an array'
          : 'an object'
        : String(v);
  return s.length > 60 ? s.slice(0, 57) + '...' : s;
};

export function object(v: unknown, name: string): Json {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new HttpError('badRequest', `${name} must be a JSON object, got ${show(v)}`);
  return v as Json;
}

export function integer(v: unknown, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new HttpError('badRequest', `${name} must be an integer in [${min}, ${max}], got ${show(v)}`);
  }
  return v;
}

/** A finite number ≥ min (> min when `exclusive`). NaN and ±Infinity cannot come through JSON, strings can. */
export function finite(v: unknown, name: string, min = -Infinity, exclusive = false): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || (exclusive && v === min)) {
    throw new HttpError(
      'badRequest',
      `${name} must be a finite number ${exclusive ? '>' : '≥'} ${min}, got ${show(v)}`,
    );
  }
  return v;
}

export function string(v: unknown, name: string, pattern?: RegExp, maxLength = 200): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > maxLength) {
    throw new HttpError(
      'badRequest',
      `${name} must be a non-empty string of at most ${maxLength} characters, got ${show(v)}`,
    );
  }
  if (pattern && !pattern.test(v)) throw new HttpError('badRequest', `${name} ${show(v)} does not match ${pattern}`);
  return v;
}

export function oneOf<T extends string>(v: unknown, name: string, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !allowed.includes(v as T))
    throw new HttpError('badRequest', `${name} must be one of ${allowed.join(', ')}, got ${show(v)}`);
  return v as T;
}

/** Rejects fields the endpoint does not know, so a typo ("tokenPerSecond") is an error rather than ignored. */
export function onlyKeys(o: Json, name: string, allowed: readonly string[]): void {
  const extra = Object.keys(o).filter((k) => !allowed.includes(k));
  if (extra.length > 0)
    throw new HttpError(
      'badRequest',
      `${name}: unknown field${extra.length > 1 ? 's' : ''} ${extra.join(', ')} (allowed: ${allowed.join(', ')})`,
    );
}

/** A `?since=` style query parameter: absent → fallback, else a non-negative integer. */
export function queryInt(v: string | null, name: string, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  if (v === null || v === '') return fallback;
  if (!/^\d+$/.test(v))
    throw new HttpError('badRequest', `query parameter ${name} must be a non-negative integer, got ${show(v)}`);
  return integer(Number(v), `query parameter ${name}`, 0, max);
}

/** Peer ids: libp2p's base58/base32 strings, or any short id of letters, digits, '.', '_' and '-'. */
export const PEER_ID = /^[A-Za-z0-9._-]{1,128}$/;
/** Model ids appear in URLs. */
export const MODEL_ID = /^[a-z0-9][a-z0-9-]{0,63}$/;
