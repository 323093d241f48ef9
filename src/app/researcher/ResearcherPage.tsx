import { QueryClientProvider } from '@tanstack/react-query';
import type { ModelSummary } from '../coordinator-api.ts';
import { formatCount, plural } from '../format.ts';
import { tokensPerStep } from '../../train/run-derived.ts';
import { explainError } from '../errors.ts';
import { ModelPicker, useChosenModel } from '../models.tsx';
import { queryClient } from '../query.ts';
import { LiveCharts } from './LiveCharts.tsx';
import { useLive } from './live.ts';
import { PromptCard } from './PromptCard.tsx';
import { ProposalCard } from './ProposalCard.tsx';
import { TopologyCard } from './TopologyCard.tsx';
import { VerificationCard } from './VerificationCard.tsx';

export function ResearcherPage() {
  return (
    <>
      <p className="lead">
        Watch a model train across the swarm: its loss and speed as they happen, who holds which stage and how fast
        their links are, how much of the work is checked. Propose a new model, or prompt one.
      </p>
      <QueryClientProvider client={queryClient}>
        <Research />
      </QueryClientProvider>
    </>
  );
}

function Research() {
  const { models, list, selected, choose } = useChosenModel();
  return (
    <div className="grid grid-single research">
      {models.error && (
        <p className="notice notice-error notice-detail" role="alert">
          {`Cannot read the models from the coordinator: ${explainError(models.error)}`}
        </p>
      )}
      {models.isPending && (
        <p className="detecting" role="status">
          <span className="spinner" aria-hidden="true" /> Reading the models…
        </p>
      )}
      {models.data && list.length === 0 && (
        <p className="muted" data-testid="research-no-models">
          No model is registered yet: propose the first one below.
        </p>
      )}
      {selected && <ModelView m={selected} models={list} choose={choose} />}
      {models.data && <PromptCard models={list} modelId={selected?.id} />}
      <ProposalCard onProposed={(m) => choose(m.id)} />
    </div>
  );
}

function ModelFacts({ m }: { m: ModelSummary }) {
  const { model, layout, optim } = m.spec;
  return (
    <>
      <p className="muted small" data-testid="research-facts">
        {plural(m.stages, 'stage')} · {formatCount(m.peers)} peer{m.peers === 1 ? '' : 's'} · codec{' '}
        <code>{m.codec}</code>
        {` · ${m.covered ? 'every stage has a holder' : 'waiting for holders'}`}
        {` · ${m.pricePer1kTokens} ETH per 1,000 tokens`}
      </p>
      {m.training?.state === 'paused' && (
        <p className="notice" role="status" data-testid="research-paused">
          Paused — waiting for stage {m.training.waitingFor.join(', ')}: no peer of the pipeline holds it or a snapshot
          of it. Training resumes by itself, from the newest snapshot every stage has, when a holder returns (it never
          restarts from random weights).
        </p>
      )}
      <p className="muted small" data-testid="research-spec">
        {`${model.layers} layers (${layout.join(' · ')} per stage) · width ${model.dModel} · ${model.heads} heads`}
        {` · context ${model.context} · vocabulary ${formatCount(model.vocab)}`}
        {` · ${formatCount(tokensPerStep(m.spec))} tokens per step`}
        {` · peak learning rate ${optim.lr} over ${formatCount(optim.steps)} steps`}
      </p>
    </>
  );
}

/** One model's cards: training (loss, throughput), topology (diagram, peers, links, codecs), verification. */
function ModelView({ m, models, choose }: { m: ModelSummary; models: ModelSummary[]; choose: (id: string) => void }) {
  const live = useLive(m.id);
  return (
    <>
      <section className="card" aria-labelledby="research-model-title" data-testid="research-model">
        <div className="card-head">
          <h2 id="research-model-title">Training</h2>
          <ModelPicker models={models} value={m.id} onChange={choose} />
        </div>
        <ModelFacts m={m} />
        <p className="holder-status" role="status" data-testid="research-stream" data-stream={live.stream}>
          {live.stream === 'live'
            ? 'Live: updates as steps finish.'
            : live.stream === 'polling'
              ? 'The live stream is down: refreshing every 5 s.'
              : 'Connecting to the live stream…'}
        </p>
        {live.error && (
          <p className="notice notice-error notice-detail" role="alert">
            {live.error}
          </p>
        )}
        <LiveCharts modelId={m.id} live={live} />
      </section>
      <section className="card" aria-labelledby="research-topo-title" data-testid="research-topology">
        <h2 id="research-topo-title">Topology</h2>
        <TopologyCard topology={live.topology} />
      </section>
      <VerificationCard modelId={m.id} />
    </>
  );
}
