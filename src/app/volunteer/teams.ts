/**
 * Joining a team is signed by the tab's own libp2p key (the one inside its peer id), so nobody can move another
 * volunteer's credit: Ed25519 over `tessera-team-join:<team>:<peer>:<nonce>`, base64 (src/coordinator/teams.ts).
 */
import type { PrivateKey } from '@libp2p/interface';
import type { TeamJoin } from '../coordinator-api.ts';

export function teamJoinMessage(teamId: string, peerId: string, nonce: string): string {
  return `tessera-team-join:${teamId}:${peerId}:${nonce}`;
}

/** 16 random bytes as hex: the coordinator refuses a nonce a peer used before. */
export function freshNonce(): string {
  return [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, '0')).join('');
}

export function toBase64(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

export async function signTeamJoin(
  key: PrivateKey,
  peerId: string,
  teamId: string,
  nonce = freshNonce(),
): Promise<TeamJoin> {
  const signature = await key.sign(new TextEncoder().encode(teamJoinMessage(teamId, peerId, nonce)));
  return { peerId, nonce, signature: toBase64(signature) };
}
