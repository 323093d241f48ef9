import { useAppStore } from '../store.ts';
import type { Problem } from '../problems.ts';
import { RichText, sentences } from './RichText.tsx';

const ACTION: Record<Problem['kind'], string> = {
  unavailable: 'Check again',
  'device-lost': 'Reconnect GPU',
  limit: 'Try again',
  validation: 'Try again',
  unknown: 'Try again',
};

/** A problem with the GPU as a whole: what happened, what to do, and a button to retry. */
export function ProblemNotice({ problem }: { problem: Problem }) {
  const connect = useAppStore((s) => s.connect);
  const detecting = useAppStore((s) => s.phase === 'detecting');
  const steps = sentences(problem.advice);
  return (
    <section
      className={`notice notice-${problem.kind === 'unavailable' ? 'warn' : 'error'}`}
      role="alert"
      aria-labelledby="problem-title"
      data-testid="problem"
      data-kind={problem.kind}
    >
      <h2 id="problem-title">{problem.title}</h2>
      <p className="notice-detail">{problem.message}</p>
      <h3>What to do</h3>
      <ul className="advice" data-testid="advice">
        {steps.map((s, i) => (
          // biome-ignore lint/suspicious/noArrayIndexKey: a problem's advice is a fixed list, never reordered
          <li key={i}>
            <RichText text={s} />
          </li>
        ))}
      </ul>
      <button type="button" className="button" onClick={() => void connect()} disabled={detecting}>
        {ACTION[problem.kind]}
      </button>
    </section>
  );
}
