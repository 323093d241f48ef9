import { useId, type ReactNode } from 'react';
import type { DraftErrors, DraftKey, ProposalDraft } from './proposal.ts';

export interface FieldState {
  draft: ProposalDraft;
  errors: DraftErrors;
  set: (k: DraftKey, v: string) => void;
}

/**
 * A labelled input (or, given options as children, a select) with its hint and its error, tied together for
 * screen readers. `name` is the draft key: the first refused field is focused by it.
 */
export function Field({
  k,
  label,
  hint,
  draft,
  errors,
  set,
  inputMode,
  placeholder,
  children,
}: FieldState & {
  k: DraftKey;
  label: string;
  hint?: ReactNode;
  inputMode?: 'numeric' | 'decimal';
  placeholder?: string;
  children?: ReactNode;
}) {
  const base = useId();
  const id = `${base}-${k}`;
  const described = [hint && `${id}-hint`, errors[k] && `${id}-err`].filter(Boolean).join(' ') || undefined;
  const common = {
    id,
    name: k,
    value: draft[k],
    'aria-invalid': errors[k] ? true : undefined,
    'aria-describedby': described,
  };
  return (
    <div className="form-field">
      <label htmlFor={id}>{label}</label>
      {children ? (
        <select {...common} onChange={(e) => set(k, e.target.value)}>
          {children}
        </select>
      ) : (
        <input
          {...common}
          type="text"
          inputMode={inputMode}
          placeholder={placeholder}
          onChange={(e) => set(k, e.target.value)}
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
