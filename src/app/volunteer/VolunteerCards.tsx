/**
 * The Volunteer page's BOINC-style cards besides "This tab": preferences (model, GPU-use cap, when to step
 * aside), the stage snapshots this browser stores, this peer's credit, teams, and what this peer can and cannot
 * see of the model.
 */
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useEffect, useId, useState, type FormEvent } from 'react';
import { api, ApiError, type PeerCredits } from '../coordinator-api.ts';
import { SNAPSHOTS_KEPT } from '../../net/snapshots.ts';
import { formatBytes, formatCount, formatFlopRate, formatFlops, formatPercent } from '../format.ts';
import { explainError } from '../errors.ts';
import { useHolderPeer } from '../holder/store.ts';
import { useModels } from '../models.tsx';
import { DUTY_MIN, holdReason, useVolunteerSettings } from './settings.ts';
import { isActive, useVolunteerStore } from './store.ts';
import { signTeamJoin } from './teams.ts';
import { ScrollTable } from '../components/ScrollTable.tsx';
import { num, TableHead } from '../components/TableHead.tsx';

const MOST_NEEDED = '';

export function SettingsCard() {
  const st = useVolunteerSettings();
  const vol = useVolunteerStore();
  const models = useModels();
  const id = useId();
  const active = isActive(vol.status);
  const assigned = vol.assignment?.modelId;
  const hold = vol.device ? holdReason(vol.device, st) : undefined;
  return (
    <section className="card" aria-labelledby={`${id}-title`} data-testid="vol-settings">
      <h2 id={`${id}-title`}>Settings</h2>
      <div className="form-field">
        <label htmlFor={`${id}-model`}>Model to train</label>
        <select
          id={`${id}-model`}
          value={st.preferModel ?? MOST_NEEDED}
          onChange={(e) => st.set({ preferModel: e.target.value || null })}
          aria-describedby={`${id}-model-hint`}
          data-testid="vol-prefer"
        >
          <option value={MOST_NEEDED}>Where most needed</option>
          {(models.data ?? []).map((m) => (
            <option key={m.id} value={m.id}>
              {m.name} ({m.id})
              {m.training?.state === 'paused'
                ? ` · paused, waiting for stage ${m.training.waitingFor.join(', ')}`
                : m.covered
                  ? ''
                  : ' · needs holders'}
            </option>
          ))}
          {st.preferModel && !models.data?.some((m) => m.id === st.preferModel) && (
            <option value={st.preferModel}>{st.preferModel} (not registered here)</option>
          )}
        </select>
        <span id={`${id}-model-hint`} className="muted small">
          {st.preferModel === null
            ? 'The coordinator puts this tab where the swarm is slowest.'
            : `Asks for ${st.preferModel}; the coordinator may still wait until it needs a holder.`}
          {active && assigned && (st.preferModel ?? assigned) !== assigned
            ? ' Takes effect when you leave and join again.'
            : ''}
        </span>
        {models.error && <span className="form-error">{`Cannot list the models: ${explainError(models.error)}`}</span>}
      </div>
      <div className="form-field">
        <label htmlFor={`${id}-duty`}>GPU use: at most {formatPercent(st.dutyCycle)} of the time</label>
        <input
          id={`${id}-duty`}
          type="range"
          min={DUTY_MIN * 100}
          max={100}
          step={10}
          value={Math.round(st.dutyCycle * 100)}
          onChange={(e) => st.set({ dutyCycle: Number(e.target.value) / 100 })}
          aria-describedby={`${id}-duty-hint`}
          aria-valuetext={`${Math.round(st.dutyCycle * 100)} percent`}
          data-testid="vol-duty"
        />
        <span id={`${id}-duty-hint`} className="muted small">
          After each piece of work the GPU rests in proportion, so the fans and the rest of your computer stay calm.
          {active && !vol.canTune.dutyCycle && vol.peerId
            ? ' This build’s worker cannot cap its GPU use yet; the setting applies once it can.'
            : ''}
        </span>
      </div>
      <div className="form-field">
        <label htmlFor={`${id}-share`}>Inference’s share of GPU turns: {formatPercent(st.inferenceShare)}</label>
        <input
          id={`${id}-share`}
          type="range"
          min={0}
          max={100}
          step={10}
          value={Math.round(st.inferenceShare * 100)}
          onChange={(e) => st.set({ inferenceShare: Number(e.target.value) / 100 })}
          aria-describedby={`${id}-share-hint`}
          aria-valuetext={`${Math.round(st.inferenceShare * 100)} percent`}
        />
        <span id={`${id}-share-hint`} className="muted small">
          When prompts and training both wait for this GPU, how often a prompt goes first.
        </span>
      </div>
      <fieldset>
        <legend>Pause automatically</legend>
        <div className="check">
          <input
            id={`${id}-hidden`}
            type="checkbox"
            checked={st.pauseWhenHidden}
            onChange={(e) => st.set({ pauseWhenHidden: e.target.checked })}
            data-testid="vol-pause-hidden"
          />
          <label htmlFor={`${id}-hidden`}>when this tab is hidden</label>
        </div>
        <div className="check">
          <input
            id={`${id}-battery`}
            type="checkbox"
            checked={st.pauseOnBattery}
            onChange={(e) => st.set({ pauseOnBattery: e.target.checked })}
            aria-describedby={`${id}-battery-hint`}
          />
          <label htmlFor={`${id}-battery`}>when this device runs on battery</label>
        </div>
        <span id={`${id}-battery-hint`} className="muted small">
          {vol.device?.onBattery === undefined
            ? 'Only some browsers say whether the device is on battery (Chrome and Edge do).'
            : vol.device.onBattery
              ? 'Now on battery.'
              : 'Now on mains power.'}
          {hold && vol.status !== 'paused' && vol.status !== 'pausing' ? ` Will pause: ${hold}.` : ''}
        </span>
      </fieldset>
    </section>
  );
}

const plural = (n: number, one: string) => `${formatCount(n)} ${one}${n === 1 ? '' : 's'}`;

/**
 * The stage snapshots this browser keeps (so a model survives every holder closing its tab): how much, of what,
 * and a two-step Clear, refused while the tab volunteers (its worker reads and writes them).
 */
export function StorageCard() {
  const vol = useVolunteerStore();
  const watchStorage = useVolunteerStore((s) => s.watchStorage);
  const [confirming, setConfirming] = useState(false);
  const [done, setDone] = useState('');
  const id = useId();
  useEffect(() => watchStorage(), [watchStorage]);
  const st = vol.storage;
  const busy = isActive(vol.status) || vol.status === 'leaving';
  const why = busy
    ? 'Leave the swarm first: this tab reads and writes its stored stages while it volunteers.'
    : vol.clearing
      ? 'Clearing…'
      : undefined;
  const clear = async () => {
    const what = st ? `${plural(st.count, 'snapshot')} (${formatBytes(st.bytes)})` : 'the snapshots';
    setConfirming(false);
    await vol.clearStorage();
    if (!useVolunteerStore.getState().storageError) setDone(`Cleared ${what}.`);
  };
  return (
    <section className="card" aria-labelledby={`${id}-title`} data-testid="vol-storage">
      <h2 id={`${id}-title`}>Stored stages</h2>
      <p className="muted small">
        So that a model outlives every holder closing its tab, this tab keeps snapshots of the stage it trains (its
        weights and optimizer state, every few steps and when you leave) in {st?.where ?? 'this browser’s storage'}, the
        newest {SNAPSHOTS_KEPT} per stage. When you join again from this browser, training resumes from them. Nothing
        else is stored.
      </p>
      {st && (
        <dl className="fields">
          <div className="field">
            <dt>Storage used</dt>
            <dd data-testid="vol-storage-used" data-bytes={st.bytes} data-count={st.count}>
              {`${formatBytes(st.bytes)} · ${plural(st.count, 'snapshot')}`}
            </dd>
          </div>
          <div className="field">
            <dt>Newest</dt>
            <dd data-testid="vol-storage-newest">
              {st.newest.length === 0
                ? '—'
                : st.newest.map((x, i) => (
                    <span key={x.model}>
                      {i > 0 && ' · '}
                      <code>{x.model}</code>
                      {`: stage ${x.stage + 1} @ step ${formatCount(x.step)}`}
                    </span>
                  ))}
            </dd>
          </div>
          <div className="field">
            <dt>Kept</dt>
            <dd data-testid="vol-storage-persisted">
              {st.persisted
                ? 'persistently: the browser will not evict it'
                : 'until the browser needs the space (it did not grant persistent storage)'}
            </dd>
          </div>
        </dl>
      )}
      <p className="holder-status" role="status" aria-live="polite" data-testid="vol-storage-status">
        {vol.clearing ? 'Clearing…' : done}
      </p>
      {vol.storageError && (
        <p className="notice notice-error notice-detail" role="alert" data-testid="vol-storage-error">
          {vol.storageError}
        </p>
      )}
      {confirming && !why ? (
        <div className="controls">
          <p id={`${id}-confirm`}>
            {`Delete ${st ? plural(st.count, 'stored snapshot') : 'the stored snapshots'} from this browser? Models ` +
              'this tab trained can then resume only from their other holders.'}
          </p>
          <button
            type="button"
            className="button"
            onClick={() => void clear()}
            aria-describedby={`${id}-confirm`}
            data-testid="vol-storage-confirm"
          >
            Delete them
          </button>
          <button type="button" className="button button-quiet" onClick={() => setConfirming(false)}>
            Cancel
          </button>
        </div>
      ) : (
        <div className="controls">
          <button
            type="button"
            className="button button-quiet"
            disabled={!!why || !st || st.count === 0}
            aria-describedby={why ? `${id}-why` : undefined}
            onClick={() => {
              setDone('');
              setConfirming(true);
            }}
            data-testid="vol-storage-clear"
          >
            Clear stored stages
          </button>
          {why && (
            <p id={`${id}-why`} className="muted small" data-testid="vol-storage-why">
              {why}
            </p>
          )}
        </div>
      )}
    </section>
  );
}

/** This peer's credit per model: verified (settled), pending, recent average. Polled. */
export function CreditsCard() {
  const peerId = usePeerId();
  const q = useCredits(peerId);
  const id = useId();
  return (
    <section className="card" aria-labelledby={`${id}-title`} data-testid="vol-credits">
      <h2 id={`${id}-title`}>Credit</h2>
      <p className="muted small">
        Each piece of work this tab does is receipted; once its epoch is checked and settled it counts as verified and
        earns shares of the model (see Holder). The recent average decays with a half-life of a week.
      </p>
      {q.error && (
        <p className="notice notice-error notice-detail" role="alert">
          {`Cannot read this peer’s credit: ${explainError(q.error)}`}
        </p>
      )}
      {q.data &&
        (q.data.models.length === 0 ? (
          <p className="muted" data-testid="vol-credits-none">
            No credit yet: join the swarm and train a step.
          </p>
        ) : (
          <ScrollTable label="Credit per model">
            <table className="results" data-testid="vol-credits-table">
              <caption className="sr-only">Credit of this peer per model</caption>
              <TableHead columns={['Model', num('Verified'), num('Pending'), num('Recent average')]} />
              <tbody>
                {q.data.models.map((m) => (
                  <tr key={m.modelId}>
                    <th scope="row">
                      <code>{m.modelId}</code>
                    </th>
                    <td className="num">{formatFlops(m.verifiedFlops)}</td>
                    <td className="num">{formatFlops(m.pendingFlops)}</td>
                    <td className="num">{formatFlopRate(m.recentAverage)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </ScrollTable>
        ))}
    </section>
  );
}

const KNOWN_KEY = 'tessera-known-peer';

/**
 * Whether the coordinator knows this peer (it joined the swarm once, or a team): only then is there credit to
 * ask for — asking about a stranger is a 404, which the browser would log as an error on every first visit.
 * Known from GET /api/peers (every peer that ever joined), or remembered after a team join from this tab.
 */
function useKnownPeer(peerId: string | undefined): boolean {
  const remembered = !!peerId && localStorage.getItem(KNOWN_KEY) === peerId;
  const joinedNow = useVolunteerStore((s) => s.peerId === peerId && isActive(s.status));
  const peers = useQuery({
    queryKey: ['swarm', 'peers'],
    queryFn: () => api.peers(),
    enabled: !!peerId && !remembered && !joinedNow,
    refetchInterval: 30_000,
  });
  return !!peerId && (remembered || joinedNow || !!peers.data?.includes(peerId));
}

export function rememberKnownPeer(peerId: string): void {
  localStorage.setItem(KNOWN_KEY, peerId);
}

/**
 * This peer's credit and team, polled once the coordinator knows the peer; before that, "nothing yet". (A 404
 * still reads as nothing: the coordinator may have lost a peer that was never placed.)
 */
function useCredits(peerId: string | undefined) {
  const known = useKnownPeer(peerId);
  const none = (): PeerCredits => ({ peerId: peerId!, wallet: null, team: null, models: [] });
  return useQuery({
    queryKey: ['swarm', 'credits', peerId, known],
    queryFn: async (): Promise<PeerCredits> => {
      if (!known) return none();
      try {
        return await api.credits(peerId!);
      } catch (e) {
        if (e instanceof ApiError && e.status === 404) return none();
        throw e;
      }
    },
    enabled: !!peerId,
    refetchInterval: 15_000,
  });
}

/** The tab's peer id: the running session's, else the stored identity's (so credit shows before joining). */
function usePeerId(): string | undefined {
  const running = useVolunteerStore((s) => s.peerId);
  const peer = useHolderPeer();
  // biome-ignore lint/correctness/useExhaustiveDependencies: the stored identity is read once, on mount
  useEffect(() => {
    void peer.loadPeer();
  }, []);
  return running ?? peer.peerId;
}

export function TeamsCard() {
  const peer = useHolderPeer();
  const peerId = usePeerId();
  const queryClient = useQueryClient();
  const teams = useQuery({ queryKey: ['swarm', 'teams'], queryFn: () => api.teams(), refetchInterval: 30_000 });
  const credits = useCredits(peerId);
  const mine = credits.data?.team ?? null;
  const [name, setName] = useState('');
  const [status, setStatus] = useState('');
  const id = useId();
  const join = useMutation({
    mutationFn: async (teamId: string) => {
      if (!peer.key || !peerId) throw new Error(peer.error ?? 'this tab has no peer identity yet');
      return api.joinTeam(teamId, await signTeamJoin(peer.key, peerId, teamId));
    },
    onSuccess: async (r) => {
      rememberKnownPeer(r.peerId);
      setStatus(`Joined ${teams.data?.find((t) => t.id === r.teamId)?.name ?? r.teamId}.`);
      await queryClient.invalidateQueries({ queryKey: ['swarm'] });
    },
  });
  const create = useMutation({
    mutationFn: async (teamName: string) => {
      const t = await api.createTeam(teamName);
      await join.mutateAsync(t.id);
      return t;
    },
    onSuccess: (t) => {
      setName('');
      setStatus(`Created ${t.name} and joined it.`);
    },
  });
  const error = join.error ?? create.error;
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (name.trim()) create.mutate(name.trim());
  };
  return (
    <section className="card" aria-labelledby={`${id}-title`} data-testid="vol-teams">
      <h2 id={`${id}-title`}>Teams</h2>
      <p className="muted small">
        A team adds up its members’ credit on the leaderboards. This tab is in at most one team; joining another moves
        it. Joining is signed with this tab’s peer key.
      </p>
      <p data-testid="vol-team">
        {mine ? (
          <>
            This tab is in <strong>{mine.name}</strong>.
          </>
        ) : (
          'This tab is in no team.'
        )}
      </p>
      <p className="holder-status" role="status" aria-live="polite" data-testid="vol-team-status">
        {join.isPending || create.isPending ? 'Signing and joining…' : status}
      </p>
      {(error || teams.error) && (
        <p className="notice notice-error notice-detail" role="alert" data-testid="vol-team-error">
          {explainError(error ?? teams.error)}
        </p>
      )}
      {teams.data && teams.data.length > 0 && (
        <ScrollTable label="Teams">
          <table className="results" data-testid="vol-teams-table">
            <caption className="sr-only">Teams</caption>
            <TableHead columns={['Team', num('Members'), { label: 'Action', srOnly: true }]} />
            <tbody>
              {teams.data.map((t) => (
                <tr key={t.id} data-team={t.id}>
                  <th scope="row">{t.name}</th>
                  <td className="num">{formatCount(t.members)}</td>
                  <td>
                    {mine?.id === t.id ? (
                      <span className="muted">your team</span>
                    ) : (
                      <button
                        type="button"
                        className="button button-quiet"
                        disabled={!peerId || join.isPending}
                        onClick={() => join.mutate(t.id)}
                        aria-label={`Join ${t.name}`}
                      >
                        Join
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </ScrollTable>
      )}
      <form className="controls" onSubmit={submit}>
        <label htmlFor={`${id}-name`}>New team</label>
        <input
          id={`${id}-name`}
          value={name}
          maxLength={64}
          onChange={(e) => setName(e.target.value)}
          data-testid="vol-team-name"
        />
        <button type="submit" className="button" disabled={!name.trim() || !peerId || create.isPending}>
          Create and join
        </button>
      </form>
    </section>
  );
}

/** What a volunteer's tab holds and sees, stated plainly (the protocol's privacy boundary, issue 7). */
export function VisibilityCard() {
  const id = useId();
  return (
    <section className="card" aria-labelledby={`${id}-title`} data-testid="vol-visibility">
      <h2 id={`${id}-title`}>What this tab can and cannot see</h2>
      <ul className="plain-list">
        <li>
          <strong>It holds one stage:</strong> the weights (and optimizer state) of the few layers it trains, nothing
          more. The rest of the model is never sent to it.
        </li>
        <li>
          <strong>It sees its neighbours’ traffic:</strong> the activations the stage before sends it and the gradients
          the stage after sends back — numbers in the middle of the network, not the other stages’ weights. The first
          stage also sees the token ids it embeds (training text, or a prompt it serves) and the last stage the tokens
          it predicts.
        </li>
        <li>
          <strong>It never sees other stages’ weights,</strong> and nobody — this tab included — can download the whole
          model: generation and training run as a pipeline across the holders.
        </li>
        <li>
          <strong>Others see of this tab:</strong> its peer id, its speed, its team, and the outputs of its stage (which
          a replica may recompute to check them).
        </li>
      </ul>
    </section>
  );
}
