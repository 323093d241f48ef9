import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useId, useRef, useState, type FormEvent, type ReactNode } from 'react';
import { ApiError, api, type ModelDetail } from '../coordinator-api.ts';
import { explainError } from '../errors.ts';
import {
  checkDraft,
  CODECS,
  DEFAULT_DRAFT,
  fieldOfError,
  VOCABS,
  type DraftErrors,
  type ProposalDraft,
} from './proposal.ts';

type Key = keyof ProposalDraft;

/** A labelled input with its hint and its error, tied together for screen readers. */
function Input({
  k,
  label,
  hint,
  draft,
  errors,
  set,
  type = 'text',
  inputMode,
  children,
}: {
  k: Key;
  label: string;
  hint?: ReactNode;
  draft: ProposalDraft;
  errors: DraftErrors;
  set: (k: Key, v: string) => void;
  type?: string;
  inputMode?: 'numeric' | 'decimal';
  children?: ReactNode;
}) {
  const base = useId();
  const id = `${base}-${k}`;
  const described = [hint && `${id}-hint`, errors[k] && `${id}-err`].filter(Boolean).join(' ') || undefined;
  return (
    <div className="form-field">
      <label htmlFor={id}>{label}</label>
      {children ? (
        <select
          id={id}
          name={k}
          value={draft[k]}
          onChange={(e) => set(k, e.target.value)}
          aria-invalid={errors[k] ? true : undefined}
          aria-describedby={described}
        >
          {children}
        </select>
      ) : (
        <input
          id={id}
          name={k}
          type={type}
          inputMode={inputMode}
          value={draft[k]}
          onChange={(e) => set(k, e.target.value)}
          aria-invalid={errors[k] ? true : undefined}
          aria-describedby={described}
        />
      )}
      {hint && (
        <span id={`${id}-hint`} className="muted small">
          {hint}
        </span>
      )}
      {errors[k] && (
        <span id={`${id}-err`} className="form-error" data-testid={`propose-error-${k}`}>
          {errors[k]}
        </span>
      )}
    </div>
  );
}

/**
 * Register a new model volunteers can then choose: config, stage layout, codec, price. Checked here field by
 * field, then by the coordinator, whose refusal is shown at the field it names (or above the button).
 */
export function ProposalCard({ onProposed }: { onProposed: (m: ModelDetail) => void }) {
  const [draft, setDraft] = useState<ProposalDraft>(DEFAULT_DRAFT);
  const [errors, setErrors] = useState<DraftErrors>({});
  const [general, setGeneral] = useState<string>();
  const [done, setDone] = useState('');
  const form = useRef<HTMLFormElement>(null);
  const queryClient = useQueryClient();
  const propose = useMutation({ mutationFn: api.propose });
  const set = (k: Key, v: string) => {
    setDraft((d) => ({ ...d, [k]: v }));
    setErrors((e) => ({ ...e, [k]: undefined }));
  };
  const focusFirstError = (e: DraftErrors) => {
    const first = (Object.keys(DEFAULT_DRAFT) as Key[]).find((k) => e[k]);
    if (first) requestAnimationFrame(() => form.current?.querySelector<HTMLElement>(`[name="${first}"]`)?.focus());
  };
  async function submit(ev: FormEvent) {
    ev.preventDefault();
    setGeneral(undefined);
    setDone('');
    const checked = checkDraft(draft);
    setErrors(checked.errors);
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
  return (
    <section className="card" aria-labelledby="propose-title" data-testid="research-propose">
      <h2 id="propose-title">Propose a model</h2>
      <p className="muted small">
        A decoder-only transformer trained as a pipeline: the layout says how many layers each stage (one volunteer
        each, plus replicas) holds. Browsers can train the vocabularies the coordinator ships a corpus for.
      </p>
      <form ref={form} onSubmit={(e) => void submit(e)} noValidate className="propose-form">
        <fieldset>
          <legend>Name</legend>
          <div className="form-grid">
            <Input k="name" label="Name" {...common} />
            <Input
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
            <Input k="vocab" label="Vocabulary" {...common}>
              {VOCABS.map((v) => (
                <option key={v} value={String(v)}>
                  {v}
                </option>
              ))}
            </Input>
            <Input k="dModel" label="Width (dModel)" inputMode="numeric" {...common} />
            <Input k="heads" label="Attention heads" inputMode="numeric" {...common} />
            <Input k="layers" label="Layers" inputMode="numeric" {...common} />
            <Input k="context" label="Context (tokens)" inputMode="numeric" {...common} />
          </div>
        </fieldset>
        <fieldset>
          <legend>Pipeline and price</legend>
          <div className="form-grid">
            <Input k="layout" label="Layers per stage" hint="comma-separated, adding up to the layers" {...common} />
            <Input k="codec" label="Boundary codec" {...common}>
              {CODECS.map((c) => (
                <option key={c} value={c}>
                  {c}
                </option>
              ))}
            </Input>
            <Input k="microBatches" label="Micro-batches per step" inputMode="numeric" {...common} />
            <Input k="batch" label="Sequences per micro-batch" inputMode="numeric" {...common} />
            <Input k="pricePer1kTokens" label="Price per 1,000 tokens (ETH)" inputMode="decimal" {...common} />
          </div>
        </fieldset>
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
