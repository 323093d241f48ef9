import type { ReactNode } from 'react';

/** One row of a definition list, styled like the other pages' fields (.fields / .field in styles.css). */
export function Field({ name, testId, children }: { name: ReactNode; testId?: string; children: ReactNode }) {
  return (
    <div className="field">
      <dt>{name}</dt>
      <dd data-testid={testId}>{children}</dd>
    </div>
  );
}

/** A card's live status line (always rendered, so screen readers announce the first change too) and its error. */
export function TxStatus({ status, error, testId }: { status: string; error?: string; testId: string }) {
  return (
    <>
      <p className="holder-status" role="status" aria-live="polite" data-testid={`${testId}-status`}>
        {status}
      </p>
      {error && (
        <p className="notice notice-error notice-detail" role="alert" data-testid={`${testId}-error`}>
          {error}
        </p>
      )}
    </>
  );
}
