import { QueryClientProvider } from '@tanstack/react-query';
import type { ReactNode } from 'react';
import { formatBytes, formatCount } from '../format.ts';
import { queryClient } from '../query.ts';
import { isActive, useVolunteerStore, type StageInfo, type VolunteerState, type VolunteerStatus } from './store.ts';
import { CreditsCard, SettingsCard, StorageCard, TeamsCard, VisibilityCard } from './VolunteerCards.tsx';

const LABELS: Record<VolunteerStatus, string> = {
  idle: 'Not joined',
  starting: 'Starting',
  waiting: 'Waiting',
  loading: 'Loading data',
  connecting: 'Connecting',
  training: 'Training',
  pausing: 'Pausing',
  paused: 'Paused',
  leaving: 'Leaving',
  stopped: 'Stopped',
  error: 'Error',
};

function pillClass(s: VolunteerStatus): string {
  if (s === 'training') return 'pill pill-pass';
  if (s === 'error') return 'pill pill-fail';
  if (s === 'idle' || s === 'stopped' || s === 'paused') return 'pill pill-waiting';
  return 'pill pill-running';
}

/** Counted from 1 like the stage, e.g. "layer 2 of 4" or "layers 1–2 of 4". */
function layerRange(a: StageInfo): string {
  const [first, last] = [a.firstLayer + 1, a.endLayer];
  return `${first === last ? `layer ${first}` : `layers ${first}–${last}`} of ${a.layers}`;
}

function Field({ name, testId, children }: { name: string; testId: string; children: ReactNode }) {
  return (
    <div className="field">
      <dt>{name}</dt>
      <dd data-testid={testId}>{children}</dd>
    </div>
  );
}

function Controls({ s }: { s: VolunteerState }) {
  const active = isActive(s.status);
  const paused = s.status === 'paused' || s.status === 'pausing';
  return (
    <div className="controls">
      {!active && (
        <button
          type="button"
          className="button"
          onClick={() => void s.join()}
          disabled={s.status === 'leaving' || s.clearing}
        >
          {s.status === 'idle' ? 'Join the swarm' : 'Join again'}
        </button>
      )}
      {active && (
        <>
          {paused ? (
            <button type="button" className="button" onClick={s.resume}>
              Resume
            </button>
          ) : (
            <button
              type="button"
              className="button"
              onClick={s.pause}
              disabled={s.status !== 'training' || !s.canPause}
              aria-describedby={s.canPause ? undefined : 'pause-note'}
            >
              Pause
            </button>
          )}
          <button type="button" className="button button-quiet" onClick={() => void s.leave()}>
            Leave
          </button>
        </>
      )}
      {active && !s.canPause && s.peerId && (
        <p id="pause-note" className="muted small">
          Pausing needs a worker that can hold between steps; this build's cannot yet. Leave stops this tab instead.
        </p>
      )}
    </div>
  );
}

function Stats({ s }: { s: VolunteerState }) {
  const a = s.assignment;
  return (
    <dl className="fields">
      <Field name="Model" testId="vol-model">
        {a ? <code>{a.modelId}</code> : '—'}
      </Field>
      <Field name="Stage" testId="vol-stage">
        {a ? `${a.stage + 1} of ${a.stages} · ${layerRange(a)} · replica ${a.replica + 1} of ${a.replicas}` : '—'}
      </Field>
      <Field name="Steps done" testId="vol-steps">
        {formatCount(s.stepsDone)}
        {s.lastStep !== undefined && <span className="muted"> · model step {formatCount(s.lastStep + 1)}</span>}
      </Field>
      <Field name="Tokens/s" testId="vol-tps">
        {s.tokensPerSecond === undefined ? '—' : `${s.tokensPerSecond.toFixed(1)} (last step)`}
      </Field>
      {s.loss !== undefined && (
        <Field name="Loss" testId="vol-loss">
          {s.loss.toFixed(4)}
        </Field>
      )}
      <Field name="Sent" testId="vol-sent">
        {formatBytes(s.bytesSent)}
      </Field>
      <Field name="Received" testId="vol-received">
        {formatBytes(s.bytesReceived)}
      </Field>
      <Field name="Peers" testId="vol-peers">{`${s.peers} over direct WebRTC`}</Field>
      <Field name="Speed claimed" testId="vol-speed">
        {s.speed === undefined
          ? '—'
          : s.speed.source === 'fixed'
            ? `${s.speed.tokensPerSecond} reference tokens/s: a fixed, modest estimate (timing the reference ` +
              `workload on a software GPU takes over 10 s)`
            : `${s.speed.tokensPerSecond.toFixed(0)} reference tokens/s, measured`}
      </Field>
      {s.peerId && (
        <Field name="Peer id" testId="vol-peer-id">
          <code>{s.peerId}</code>
        </Field>
      )}
    </dl>
  );
}

export function VolunteerPage() {
  const s = useVolunteerStore();
  return (
    <>
      <p className="lead">
        Join the swarm and this tab trains one pipeline stage of a model together with other volunteers: it receives
        activations from the stage before it, sends its own to the next, and passes gradients back, peer to peer over
        WebRTC. The coordinator only picks the stage and relays the first handshake.
      </p>
      <QueryClientProvider client={queryClient}>
        <div className="grid grid-single">
          <section className="card" data-testid="volunteer" aria-labelledby="vol-title">
            <div className="card-head">
              <h2 id="vol-title">This tab</h2>
              <span className={pillClass(s.status)} data-testid="vol-status" data-status={s.status}>
                {LABELS[s.status]}
              </span>
            </div>
            <p role="status" aria-live="polite" data-testid="vol-detail">
              {s.detail}
            </p>
            {s.error && (
              <p className="notice notice-error notice-detail" role="alert" data-testid="vol-error">
                {s.error}
              </p>
            )}
            <Controls s={s} />
            <Stats s={s} />
          </section>
          <SettingsCard />
          <StorageCard />
          <CreditsCard />
          <TeamsCard />
          <VisibilityCard />
          {s.log.length > 0 && (
            <section className="card" aria-labelledby="vol-log-title">
              <h2 id="vol-log-title">Activity</h2>
              <ol className="log" data-testid="vol-log">
                {s.log.map((line, i) => (
                  // biome-ignore lint/suspicious/noArrayIndexKey: the log only grows at its end
                  <li key={i}>{line}</li>
                ))}
              </ol>
            </section>
          )}
        </div>
      </QueryClientProvider>
    </>
  );
}
