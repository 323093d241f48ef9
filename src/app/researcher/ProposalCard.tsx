import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useMemo, useRef, useState, type FormEvent } from 'react';
import { isSubspaceCodec } from '../../compress/codecs.ts';
import { defaultSubspaceK } from '../../train/run-derived.ts';
import { ApiError, api, type ModelDetail } from '../coordinator-api.ts';
import { explainError } from '../errors.ts';
import {
  checkDraft,
  checkSpec,
  CODECS,
  DEFAULT_DRAFT,
  fieldOfError,
  VOCABS,
  type DraftErrors,
  type DraftKey,
  type ProposalDraft,
} from './proposal.ts';
import { Field } from './ProposalField.tsx';
import { SpecFacts } from './SpecFacts.tsx';

const options = (values: readonly (string | number)[]) =>
  values.map((v) => (
    <option key={v} value={String(v)}>
      {v}
    </option>
  ));

/** "16 (a quarter of the width)" while the width reads as a whole number. */
function defaultK(dModel: string): string | undefined {
  const t = dModel.trim();
  return /^\d+$/.test(t) && Number(t) > 0 ? String(defaultSubspaceK(Number(t))) : undefined;
}

/**
 * Register a new model volunteers can then choose: its RunSpec, starting from the software preset. Checked
 * here by the validator the coordinator runs (each refusal shown at the field it names), then by the
 * coordinator, whose refusal is shown the same way (or above the button).
 */
export function ProposalCard({ onProposed }: { onProposed: (m: ModelDetail) => void }) {
  const [draft, setDraft] = useState<ProposalDraft>(DEFAULT_DRAFT);
  const [errors, setErrors] = useState<DraftErrors>({});
  const [general, setGeneral] = useState<string>();
  const [done, setDone] = useState('');
  const form = useRef<HTMLFormElement>(null);
  const queryClient = useQueryClient();
  const propose = useMutation({ mutationFn: api.propose });
  const live = useMemo(() => checkSpec(draft).spec, [draft]);
  const set = (k: DraftKey, v: string) => {
    setDraft((d) => ({ ...d, [k]: v }));
    setErrors((e) => ({ ...e, [k]: undefined }));
  };
  const focusFirstError = (e: DraftErrors) => {
    const first = (Object.keys(DEFAULT_DRAFT) as DraftKey[]).find((k) => e[k]);
    if (first) requestAnimationFrame(() => form.current?.querySelector<HTMLElement>(`[name="${first}"]`)?.focus());
  };
  async function submit(ev: FormEvent) {
    ev.preventDefault();
    setGeneral(undefined);
    setDone('');
    const checked = checkDraft(draft);
    setErrors(checked.errors);
    if (checked.general) setGeneral(`The run spec is not valid: ${checked.general}`);
    if (!checked.proposal) return focusFirstError(checked.errors);
    try {
      const m = await propose.mutateAsync(checked.proposal);
      setDone(
        `Registered ${m.name} as ${m.id}: volunteers can choose it now, and it trains once every stage has a holder.`,
      );
      await queryClient.invalidateQueries({ queryKey: ['swarm', 'models'] });
      onProposed(m);
    } catch (e) {
      const message = explainError(e);
      const field =
        e instanceof ApiError && e.status === 400
          ? fieldOfError(e.message)
          : e instanceof ApiError && e.status === 409
            ? 'id'
            : undefined;
      if (field) {
        const next = { [field]: message };
        setErrors(next);
        focusFirstError(next);
      } else setGeneral(`The coordinator refused the model: ${message}`);
    }
  }
  const common = { draft, errors, set };
  const k = defaultK(draft.dModel);
  return (
    <section className="card" aria-labelledby="propose-title" data-testid="research-propose">
      <h2 id="propose-title">Propose a model</h2>
      <p className="muted small">
        A decoder-only transformer trained as a pipeline: the layout says how many layers each stage (one volunteer
        each, plus replicas) holds. The form starts from the preset a browser trains in minutes; browsers can train the
        vocabularies the coordinator ships a corpus for.
      </p>
      <form ref={form} onSubmit={(e) => void submit(e)} noValidate className="propose-form">
        <fieldset>
          <legend>Name</legend>
          <div className="form-grid">
            <Field k="name" label="Name" {...common} />
            <Field
              k="id"
              label="Id (optional)"
              hint="lower-case, e.g. tiny-four; made from the name if empty"
              {...common}
            />
          </div>
        </fieldset>
        <fieldset>
          <legend>Architecture</legend>
          <div className="form-grid">
            <Field k="vocab" label="Vocabulary" {...common}>
              {options(VOCABS)}
            </Field>
            <Field k="dModel" label="Width (dModel)" inputMode="numeric" {...common} />
            <Field k="heads" label="Attention heads" inputMode="numeric" {...common} />
            <Field k="layers" label="Layers" inputMode="numeric" {...common} />
            <Field k="context" label="Context (tokens)" inputMode="numeric" {...common} />
          </div>
        </fieldset>
        <fieldset>
          <legend>Pipeline</legend>
          <div className="form-grid">
            <Field k="layout" label="Layers per stage" hint="comma-separated, adding up to the layers" {...common} />
            <Field k="microBatches" label="Micro-batches per step" inputMode="numeric" {...common} />
            <Field k="batch" label="Sequences per micro-batch" inputMode="numeric" {...common} />
            <Field k="codec" label="Boundary codec" {...common}>
              {options(CODECS)}
            </Field>
            {isSubspaceCodec(draft.codec) && (
              <Field
                k="k"
                label="Subspace dimension (k)"
                inputMode="numeric"
                placeholder={k}
                hint={k ? `empty: ${k}, a quarter of the width` : 'empty: a quarter of the width'}
                {...common}
              />
            )}
            <Field
              k="tail"
              label="Uncompressed boundaries"
              hint="the last boundaries before the head, sent without the codec"
              inputMode="numeric"
              {...common}
            />
          </div>
        </fieldset>
        <fieldset>
          <legend>Optimiser and schedule</legend>
          <div className="form-grid">
            <Field
              k="lr"
              label="Peak learning rate"
              hint="linear warm-up, then cosine down to a tenth at the last step"
              inputMode="decimal"
              {...common}
            />
            <Field k="warmup" label="Warm-up steps" inputMode="numeric" {...common} />
            <Field k="steps" label="Steps" inputMode="numeric" {...common} />
            <Field k="weightDecay" label="Weight decay" inputMode="decimal" {...common} />
            <Field k="clip" label="Gradient clip (global norm)" hint="0: no clipping" inputMode="decimal" {...common} />
          </div>
        </fieldset>
        <fieldset>
          <legend>Price</legend>
          <div className="form-grid">
            <Field k="pricePer1kTokens" label="Price per 1,000 tokens (ETH)" inputMode="decimal" {...common} />
          </div>
        </fieldset>
        <section className="propose-derived" aria-labelledby="propose-derived-title">
          <h3 id="propose-derived-title">What it trains</h3>
          <SpecFacts spec={live} />
        </section>
        {general && (
          <p className="notice notice-error notice-detail" role="alert" data-testid="propose-error">
            {general}
          </p>
        )}
        <p className="holder-status" role="status" aria-live="polite" data-testid="propose-status">
          {propose.isPending ? 'Registering…' : done}
        </p>
        <div className="controls">
          <button type="submit" className="button" disabled={propose.isPending}>
            Propose model
          </button>
          <button
            type="button"
            className="button button-quiet"
            onClick={() => {
              setDraft(DEFAULT_DRAFT);
              setErrors({});
              setGeneral(undefined);
            }}
          >
            Reset to defaults
          </button>
        </div>
      </form>
    </section>
  );
}
