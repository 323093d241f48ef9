import { Bar, CartesianGrid, ComposedChart, Legend, Line, ResponsiveContainer, Tooltip, XAxis, YAxis } from 'recharts';
import { ScrollTable } from '../components/ScrollTable.tsx';
import type { ClaimProof, EpochEntry } from './api.ts';
import { chartData, epochState, formatGflop, formatShares, formatWhen, type ChainFacts } from './shares.ts';

/** Ticks for values already scaled into 1–999 (or small fractions when everything is tiny). */
const tick = (v: number) => (v === 0 ? '0' : Math.abs(v) >= 100 ? v.toFixed(0) : Number(v.toPrecision(3)).toString());

/**
 * Shares earned per epoch (bars) and the running total (line). The chart is the picture; the table under it
 * carries the exact figures, for reading and for screen readers.
 */
export function EarningsChart({
  modelId,
  epochs,
  claim,
  chain,
}: {
  modelId: string;
  epochs: EpochEntry[];
  claim?: ClaimProof | null;
  chain?: ChainFacts;
}) {
  const { points, scale } = chartData(epochs);
  const now = Math.floor(Date.now() / 1000);
  const rows = [...epochs].sort((a, b) => b.epoch - a.epoch);
  if (epochs.length === 0)
    return (
      <p className="muted">No settled epochs yet: shares appear here once an epoch’s work is verified and settled.</p>
    );
  return (
    <>
      {points.length > 0 && (
        <figure className="holder-chart" data-testid="holder-chart">
          <div className="holder-chart-box" aria-hidden="true">
            <ResponsiveContainer width="100%" height="100%">
              <ComposedChart data={points} margin={{ top: 8, right: 8, bottom: 4, left: 0 }} accessibilityLayer={false}>
                <CartesianGrid strokeDasharray="3 3" stroke="#8a99ab" strokeOpacity={0.35} />
                <XAxis dataKey="epoch" tickLine={false} stroke="#8a99ab" fontSize={12} />
                <YAxis tickFormatter={tick} width={44} stroke="#8a99ab" fontSize={12} />
                <Tooltip formatter={(v) => tick(Number(v))} labelFormatter={(l) => `Epoch ${l}`} />
                <Legend wrapperStyle={{ fontSize: 13 }} />
                <Bar dataKey="earned" name="Earned in epoch" fill="#0e9aa7" isAnimationActive={false} maxBarSize={40} />
                <Line
                  dataKey="cumulative"
                  name="Cumulative"
                  stroke="#f59e0b"
                  strokeWidth={2}
                  dot={{ r: 3 }}
                  isAnimationActive={false}
                  type="monotone"
                />
              </ComposedChart>
            </ResponsiveContainer>
          </div>
          <figcaption className="muted small">
            Shares of <code>{modelId}</code> per epoch, in {scale.label}: bars earned in the epoch, line the running
            total.
          </figcaption>
        </figure>
      )}
      <ScrollTable label={`Shares per epoch for ${modelId}`}>
        <table className="results holder-epochs" data-testid="holder-epochs">
          <caption className="sr-only">Shares per epoch for {modelId}</caption>
          <thead>
            <tr>
              <th scope="col">Epoch</th>
              <th scope="col" className="num">
                Earned (shares)
              </th>
              <th scope="col" className="num">
                Cumulative
              </th>
              <th scope="col">Status</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((e) => {
              const state = epochState(e, claim ?? null, chain);
              return (
                <tr key={e.epoch} data-epoch={e.epoch}>
                  <th scope="row">{e.epoch}</th>
                  <td className="num" title={formatGflop(BigInt(e.shares))}>
                    {formatShares(BigInt(e.shares))}
                  </td>
                  <td className="num">{formatShares(BigInt(e.cumulative))}</td>
                  <td>
                    {state.label}
                    {state.opensAt !== null && <span className="muted"> · opens {formatWhen(state.opensAt, now)}</span>}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </ScrollTable>
    </>
  );
}
