import { AdapterCard } from './components/AdapterCard.tsx';
import { LimitsCard } from './components/LimitsCard.tsx';
import { ProblemNotice } from './components/ProblemNotice.tsx';
import { SelfTestPanel } from './components/SelfTestPanel.tsx';
import { useAppStore } from './store.ts';

function Logo() {
  return (
    <svg className="logo" viewBox="0 0 32 32" aria-hidden="true" focusable="false">
      <rect width="32" height="32" rx="7" fill="#13233a" />
      <rect x="6" y="6" width="9" height="9" rx="2" fill="#5eead4" />
      <rect x="17" y="6" width="9" height="9" rx="2" fill="#38bdf8" />
      <rect x="6" y="17" width="9" height="9" rx="2" fill="#38bdf8" />
      <rect x="17" y="17" width="9" height="9" rx="2" fill="#f59e0b" />
    </svg>
  );
}

export function App() {
  const phase = useAppStore((s) => s.phase);
  const problem = useAppStore((s) => s.problem);
  const hasAdapter = useAppStore((s) => s.adapter !== undefined);
  return (
    <>
      <header className="site-header">
        <div className="wrap header-inner">
          <span className="brand">
            <Logo />
            Tessera
          </span>
          <p className="tagline">
            Volunteers train one pipeline stage of an open language model in their browser tab, and earn ownership shares
            of that model for the verified work.
          </p>
        </div>
      </header>
      <main className="wrap" data-phase={phase}>
        <h1>Your GPU</h1>
        <p className="lead">
          Tessera trains with WebGPU. This page finds your GPU and checks, on your own device, that it computes Tessera's
          training kernels correctly. Nothing leaves your browser.
        </p>
        {(phase === 'detecting' || phase === 'idle') && (
          <p className="detecting" role="status">
            <span className="spinner" aria-hidden="true" /> Looking for WebGPU…
          </p>
        )}
        {problem && <ProblemNotice problem={problem} />}
        {hasAdapter && (
          <div className="grid">
            <AdapterCard />
            <SelfTestPanel />
            <LimitsCard />
          </div>
        )}
      </main>
    </>
  );
}
