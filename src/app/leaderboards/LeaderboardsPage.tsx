import { QueryClientProvider, useQuery } from '@tanstack/react-query';
import { api, type LeaderboardBy, type LeaderboardRow } from '../coordinator-api.ts';
import { formatCount, formatFlopRate, formatFlops, shortId } from '../format.ts';
import { explainError } from '../errors.ts';
import { queryClient } from '../query.ts';
import { ModelPicker, useChosenModel } from '../models.tsx';
import { ScrollTable } from '../components/ScrollTable.tsx';
import { num, TableHead } from '../components/TableHead.tsx';

export function LeaderboardsPage() {
  return (
    <>
      <p className="lead">
        Who trained the most, per model: verified work (checked and settled), work still pending verification, and the
        recent average — credit per second, decaying with a half-life of a week, so it shows who is active now.
      </p>
      <QueryClientProvider client={queryClient}>
        <Boards />
      </QueryClientProvider>
    </>
  );
}

function Boards() {
  const { models, list, selected, choose } = useChosenModel();
  if (models.error)
    return (
      <p className="notice notice-error notice-detail" role="alert">
        {`Cannot read the models from the coordinator: ${explainError(models.error)}`}
      </p>
    );
  if (models.isPending)
    return (
      <p className="detecting" role="status">
        <span className="spinner" aria-hidden="true" /> Reading the models…
      </p>
    );
  if (!selected)
    return (
      <p className="muted" data-testid="boards-no-models">
        No model is registered yet, so there is no one to rank.
      </p>
    );
  return (
    <div className="grid grid-single">
      <ModelPicker models={list} value={selected.id} onChange={choose} />
      <Board modelId={selected.id} by="volunteer" title="Volunteers" />
      <Board modelId={selected.id} by="team" title="Teams" />
    </div>
  );
}

function Board({ modelId, by, title }: { modelId: string; by: LeaderboardBy; title: string }) {
  const q = useQuery({
    queryKey: ['swarm', 'leaderboard', modelId, by],
    queryFn: () => api.leaderboard(modelId, by),
    refetchInterval: 15_000,
  });
  const titleId = `board-${by}-title`;
  return (
    <section className="card" aria-labelledby={titleId} data-testid={`board-${by}`}>
      <h2 id={titleId}>{title}</h2>
      {q.error && (
        <p className="notice notice-error notice-detail" role="alert">
          {`Cannot read the ${title.toLowerCase()} leaderboard: ${explainError(q.error)}`}
        </p>
      )}
      {q.isPending && (
        <p className="muted" role="status">
          Reading…
        </p>
      )}
      {q.data &&
        (q.data.rows.length === 0 ? (
          <p className="muted">
            {by === 'team' ? 'No team has credit on this model yet.' : 'No one has credit on this model yet.'}
          </p>
        ) : (
          <BoardTable rows={q.data.rows} by={by} modelId={modelId} />
        ))}
    </section>
  );
}

function BoardTable({ rows, by, modelId }: { rows: LeaderboardRow[]; by: LeaderboardBy; modelId: string }) {
  return (
    <ScrollTable label={`${by === 'team' ? 'Teams' : 'Volunteers'} leaderboard`}>
      <table className="results" data-testid={`board-${by}-table`}>
        <caption className="sr-only">
          {`${by === 'team' ? 'Teams' : 'Volunteers'} of ${modelId} by verified ` + `work`}
        </caption>
        <TableHead
          columns={[
            num('Rank'),
            by === 'team' ? 'Team' : 'Volunteer',
            by === 'volunteer' && 'Team',
            num('Verified'),
            num('Pending'),
            num('Recent average'),
            num('Peers'),
          ]}
        />
        <tbody>
          {rows.map((r) => (
            <tr key={r.id} data-id={r.id}>
              <td className="num">{r.rank}</td>
              <th scope="row">{by === 'team' ? r.name : <code title={r.id}>{r.name || shortId(r.id)}</code>}</th>
              {by === 'volunteer' && <td>{r.team ?? '—'}</td>}
              <td className="num" title={`${r.verifiedFlops} FLOP`}>
                {formatFlops(r.verifiedFlops)}
              </td>
              <td className="num" title={`${r.pendingFlops} FLOP`}>
                {formatFlops(r.pendingFlops)}
              </td>
              <td className="num">{formatFlopRate(r.recentAverage)}</td>
              <td className="num">{formatCount(r.peers)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </ScrollTable>
  );
}
