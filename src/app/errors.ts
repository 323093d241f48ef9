import { ApiError } from './http.ts';

/**
 * One readable sentence for an error from the coordinator's API (no viem here: the Volunteer page is in the
 * main bundle; wallet errors go through holder/errors.ts on the pages that load wagmi).
 */
export function explainError(e: unknown): string {
  if (e instanceof Error) {
    const first = e.message.split('\n')[0];
    return e instanceof ApiError && e.fromCoordinator ? `${first} (${e.code})` : first;
  }
  return String(e);
}
