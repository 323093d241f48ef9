import { assign, type Move } from './assignment.ts';
import { Departures } from './departures.ts';
import { LedgerStore } from './ledger-store.ts';
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
    const current = store.listAssignments();
    const excluded = excludedPeers(
      store,
      current.map((a) => a.peerId),
    );
    const peers = store
      .listPeers('alive')
      .filter((p) => !excluded.has(p.peerId))
      .map((p) => ({ id: p.peerId, tokensPerSecond: p.tokensPerSecond, alive: true, preferModel: p.preferModel }));
    const { assignments, moves } = assign(models, peers, current);
    store.replaceAssignments(assignments, at);
    for (const m of moves)
      store.logEvent('assign', { cause, peerId: m.peerId, reason: m.reason, from: m.from, to: m.to }, at);
    return moves;
  });
  if (moves.length > 0)
    log?.('info', `assignment after ${cause}: ${moves.length} move(s)`, { moves: moves.map(describe) });
  return moves;
}

function describe(m: Move): string {
  const at = (p: Move['from']) => (p ? `${p.modelId}/${p.stage}.${p.replica}` : '-');
  return `${m.peerId} ${at(m.from)} → ${at(m.to)} (${m.reason})`;
}

/**
 * Peers that may not hold a stage: those banned after failed audits, those handing their stage off before they
 * leave (src/coordinator/departures.ts), and every peer of a wallet but one (the one holding a stage now, else the
 * earliest bound) — one wallet never holds two stages, whatever peer ids it uses.
 */
function excludedPeers(store: Store, assigned: readonly string[]): Set<string> {
  const ledger = new LedgerStore(store);
  const out = ledger.bannedPeers();
  for (const p of new Departures(store).excluded()) out.add(p);
  const holding = new Set(assigned);
  const byWallet = new Map<string, string[]>();
  for (const [peer, wallet] of ledger.allBindings()) {
    if (out.has(peer) || store.getPeer(peer)?.status !== 'alive') continue;
    byWallet.set(wallet, [...(byWallet.get(wallet) ?? []), peer]);
  }
  for (const peers of byWallet.values()) {
    const keep =
      peers.find((p) => holding.has(p)) ?? peers.sort((a, b) => ledger.getBinding(a)!.at - ledger.getBinding(b)!.at)[0];
    for (const p of peers) if (p !== keep) out.add(p);
  }
  return out;
}
