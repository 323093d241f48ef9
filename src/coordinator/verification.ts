/**
 * Verification figures per epoch for the Researcher page: how many work units were receipted, how many of
 * them a sibling replica recomputed (audits that compared: same input, output hash checked), how many of those
 * disagreed, and who was caught. Settled epochs read what settlement stored; the open epoch is judged now, with
 * the same pure function settlement will use (src/ledger/verdict.ts), and marked pending.
 */
import { judgeEpoch, type AuditOutcome } from '../ledger/verdict.ts';
import { HttpError } from './errors.ts';
import type { LedgerStore } from './ledger-store.ts';
import type { Store } from './store.ts';
import type { VerificationEpoch } from '../wire/index.ts';

type Row = Record<string, unknown>;

export type { VerificationEpoch };

/** Units compared (distinct), and those where some comparison found a different output. */
function auditFigures(audits: ReadonlyArray<Pick<AuditOutcome, 'unit' | 'result'>>): {
  audited: number;
  mismatches: number;
} {
  const compared = new Set<string>();
  const bad = new Set<string>();
  for (const a of audits) {
    if (a.result === 'match' || a.result === 'mismatch') compared.add(a.unit);
    if (a.result === 'mismatch') bad.add(a.unit);
  }
  return { audited: compared.size, mismatches: bad.size };
}

export function verificationView(store: Store, ledger: LedgerStore, modelId: string) {
  const model = store.getModel(modelId);
  if (!model) throw new HttpError('notFound', `unknown model ${JSON.stringify(modelId.slice(0, 80))}`);
  const db = store.connection;
  const units = new Map<number | null, number>();
  for (const r of db
    .prepare("SELECT epoch, COUNT(*) AS n FROM receipts WHERE model_id = ? AND kind = 'train' GROUP BY epoch")
    .all(modelId) as Row[]) {
    units.set(r.epoch === null ? null : Number(r.epoch), Number(r.n));
  }
  const epochs: VerificationEpoch[] = ledger.listEpochs(modelId).map((e) => {
    const n = units.get(e.epoch) ?? 0;
    const f = auditFigures(e.audits as AuditOutcome[]);
    const caught = (e.verdicts as Array<{ peerId: string; caught: boolean }>)
      .filter((v) => v.caught)
      .map((v) => v.peerId);
    return { epoch: e.epoch, status: 'settled', units: n, ...f, caught, share: n > 0 ? f.audited / n : 0 };
  });
  // The open epoch: receipts not settled yet, judged as settlement would judge them now.
  const open = ledger.openTrainingReceipts(modelId);
  if (open.length > 0) {
    const judged = judgeEpoch(open, model.spec.layout.length);
    const n = units.get(null) ?? 0;
    const f = auditFigures(judged.audits);
    epochs.push({
      epoch: (epochs.at(-1)?.epoch ?? 0) + 1,
      status: 'pending',
      units: n,
      ...f,
      caught: judged.verdicts.filter((v) => v.caught).map((v) => v.peerId),
      share: n > 0 ? f.audited / n : 0,
    });
  }
  const totals = epochs.reduce(
    (t, e) => ({ units: t.units + e.units, audited: t.audited + e.audited, mismatches: t.mismatches + e.mismatches }),
    { units: 0, audited: 0, mismatches: 0 },
  );
  return { modelId, epochs, totals: { ...totals, share: totals.units > 0 ? totals.audited / totals.units : 0 } };
}
