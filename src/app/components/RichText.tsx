import { Fragment, type ReactNode } from 'react';

/**
 * Advice strings come from the GPU runtime as plain text. Shows browser URLs (chrome://flags/…) and
 * `backticked` commands as code, so a person can see exactly what to type.
 */
export function RichText({ text }: { text: string }): ReactNode {
  const parts = text.split(/(`[^`]+`|(?:chrome|edge|about):\/\/[\w./#-]*[\w/#-])/g);
  // The parts of one fixed string never reorder, so their positions are stable keys.
  return parts.map((part, i) => {
    // biome-ignore lint/suspicious/noArrayIndexKey: positions in a fixed split are stable
    if (i % 2 === 0) return <Fragment key={i}>{part}</Fragment>;
    // biome-ignore lint/suspicious/noArrayIndexKey: positions in a fixed split are stable
    return <code key={i}>{part.startsWith('`') ? part.slice(1, -1) : part}</code>;
  });
}

/** Splits a paragraph of advice into its sentences, to show as a list of steps. */
export function sentences(text: string): string[] {
  return text.split(/(?<=[.!?])\s+(?=[A-Z])/).filter((s) => s.trim().length > 0);
}
