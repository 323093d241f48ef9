import { assign, type Move } from './assignment.ts';
import { toAssignModel } from './registry.ts';
import type { Store } from './store.ts';
import type { Logger } from './types.ts';

/**
 * Recomputes the assignment from the stored models, alive peers and current assignment, stores it, and logs
 * one 'assign' event per move, all in one transaction (a crash leaves the old assignment or the new one).
 */
export function rebalance(store: Store, at: number, cause: string, log?: Logger): Move[] {
  const moves = store.transaction(() => {
    const models = store.listModels().map(toAssignModel);
    const peers = store.listPeers('alive').map((p) => ({ id: p.peerId, tokensPerSecond: p.tokensPerSecond, alive: true, preferModel: p.preferModel }));
    const { assignments, moves } = assign(models, peers, store.listAssignments());
    store.replaceAssignments(assignments, at);
    for (const m of moves) store.logEvent('assign', { cause, peerId: m.peerId, reason: m.reason, from: m.from, to: m.to }, at);
    return moves;
  });
  if (moves.length > 0) log?.('info', `assignment after ${cause}: ${moves.length} move(s)`, { moves: moves.map(describe) });
  return moves;
}

function describe(m: Move): string {
  const at = (p: Move['from']) => (p ? `${p.modelId}/${p.stage}.${p.replica}` : '-');
  return `${m.peerId} ${at(m.from)} → ${at(m.to)} (${m.reason})`;
}
