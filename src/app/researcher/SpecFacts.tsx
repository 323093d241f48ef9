import { ScrollTable } from '../components/ScrollTable.tsx';
import { formatCount, formatFlops } from '../format.ts';
import type { RunSpec } from '../../train/run-spec.ts';
import { proposalFacts } from './proposal-facts.ts';

/** What the proposed spec implies (stages, their cost, tokens), recomputed as the form changes. */
export function SpecFacts({ spec }: { spec: RunSpec | undefined }) {
  if (!spec)
    return (
      <p className="muted small" data-testid="propose-derived">
        The stages’ cost and the tokens per step show here once every field is valid.
      </p>
    );
  const f = proposalFacts(spec);
  const shape = `${spec.microBatches} micro-batches × ${spec.batch} sequences × ${spec.model.context} tokens`;
  return (
    <div data-testid="propose-derived">
      <p className="muted small" data-testid="propose-tokens">
        {formatCount(f.tokensPerStep)} tokens per step ({shape}) · {formatCount(f.tokensTotal)} tokens over{' '}
        {formatCount(spec.optim.steps)} steps
        {f.k !== undefined && ` · subspace k = ${f.k}`}
      </p>
      <ScrollTable label="Training FLOPs per stage">
        <table className="results" data-testid="propose-stages">
          <caption className="propose-caption muted small">Training FLOPs per stage</caption>
          <thead>
            <tr>
              <th scope="col">Stage</th>
              <th scope="col">Holds</th>
              <th scope="col" className="num">
                Per token
              </th>
              <th scope="col" className="num">
                Per step
              </th>
            </tr>
          </thead>
          <tbody>
            {f.stages.map((s) => (
              <tr key={s.index}>
                <th scope="row">{s.index + 1}</th>
                <td>{s.label}</td>
                <td className="num">{formatFlops(s.flopsPerToken)}</td>
                <td className="num">{formatFlops(s.flopsPerStep)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </ScrollTable>
    </div>
  );
}
