import { useQuery } from '@tanstack/react-query';
import { api } from '../coordinator-api.ts';
import { formatCount, formatPercent, shortId } from '../format.ts';
import { explainError } from '../errors.ts';
import { ScrollTable } from '../components/ScrollTable.tsx';
import { num, TableHead } from '../components/TableHead.tsx';

/** Per settled epoch: work units receipted, the share a replica recomputed, mismatches found and who was caught. */
export function VerificationCard({ modelId }: { modelId: string }) {
  const q = useQuery({
    queryKey: ['research', 'verification', modelId],
    queryFn: () => api.verification(modelId),
    refetchInterval: 15_000,
  });
  return (
    <section className="card" aria-labelledby="research-verify-title" data-testid="research-verification">
      <h2 id="research-verify-title">Verification</h2>
      <p className="muted small">
        A share of each epoch’s work is recomputed by another holder of the same stage; a different output is a
        mismatch, and the peer that sent it is caught (no credit, a strike).
      </p>
      {q.error && (
        <p className="notice notice-error notice-detail" role="alert">
          {`Cannot read the verification figures: ${explainError(q.error)}`}
        </p>
      )}
      {q.data &&
        (q.data.epochs.length === 0 ? (
          <p className="muted">No work has been receipted yet.</p>
        ) : (
          <ScrollTable label="Verification per epoch">
            <table className="results" data-testid="research-verification-table">
              <caption className="sr-only">Verification per epoch for {modelId}</caption>
              <TableHead
                columns={['Epoch', num('Units'), num('Recomputed'), num('Share'), num('Mismatches'), 'Caught']}
              />
              <tbody>
                {[...q.data.epochs]
                  .sort((a, b) => b.epoch - a.epoch)
                  .map((e) => (
                    <tr key={e.epoch}>
                      <th scope="row">
                        {e.epoch}
                        {e.status === 'pending' && <span className="muted"> (open)</span>}
                      </th>
                      <td className="num">{formatCount(e.units)}</td>
                      <td className="num">{formatCount(e.audited)}</td>
                      <td className="num">{formatPercent(e.share)}</td>
                      <td className="num">{formatCount(e.mismatches)}</td>
                      <td>
                        {e.caught.length === 0
                          ? 'none'
                          : e.caught.map((p) => (
                              <code key={p} title={p}>
                                {shortId(p)}{' '}
                              </code>
                            ))}
                      </td>
                    </tr>
                  ))}
              </tbody>
              <tfoot>
                <tr>
                  <th scope="row">All</th>
                  <td className="num">{formatCount(q.data.totals.units)}</td>
                  <td className="num">{formatCount(q.data.totals.audited)}</td>
                  <td className="num">{formatPercent(q.data.totals.share)}</td>
                  <td className="num">{formatCount(q.data.totals.mismatches)}</td>
                  <td />
                </tr>
              </tfoot>
            </table>
          </ScrollTable>
        ))}
    </section>
  );
}
