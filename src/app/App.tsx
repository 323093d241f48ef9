import { AdapterCard } from './components/AdapterCard.tsx';
import { LimitsCard } from './components/LimitsCard.tsx';
import { ProblemNotice } from './components/ProblemNotice.tsx';
import { SelfTestPanel } from './components/SelfTestPanel.tsx';
import { lazy, Suspense, useEffect, useRef } from 'react';
import { ROUTES, useRoute } from './route.ts';
import { useAppStore } from './store.ts';
import { VolunteerPage } from './volunteer/VolunteerPage.tsx';

// wagmi, viem and recharts load only when someone opens the Holder page.
const HolderPage = lazy(() => import('./holder/HolderPage.tsx').then((m) => ({ default: m.HolderPage })));
const ResearcherPage = lazy(() =>
  import('./researcher/ResearcherPage.tsx').then((m) => ({ default: m.ResearcherPage })),
);
const LeaderboardsPage = lazy(() =>
  import('./leaderboards/LeaderboardsPage.tsx').then((m) => ({ default: m.LeaderboardsPage })),
);

function Loading({ what }: { what: string }) {
  return (
    <p className="detecting" role="status">
      <span className="spinner" aria-hidden="true" /> Loading the {what} page…
    </p>
  );
}

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

function GpuPage() {
  const phase = useAppStore((s) => s.phase);
  const problem = useAppStore((s) => s.problem);
  const hasAdapter = useAppStore((s) => s.adapter !== undefined);
  return (
    <>
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
    </>
  );
}

export function App() {
  const phase = useAppStore((s) => s.phase);
  const route = useRoute();
  const title = ROUTES.find((r) => r.route === route)!.title;
  const heading = useRef<HTMLHeadingElement>(null);
  const shown = useRef(route);
  // After following a link, move focus to the new page's heading (keyboard and screen-reader users land there).
  useEffect(() => {
    if (shown.current !== route) heading.current?.focus();
    shown.current = route;
    document.title = `Tessera · ${title}`;
  }, [route, title]);
  return (
    <>
      <header className="site-header">
        <div className="wrap header-inner">
          <span className="brand">
            <Logo />
            Tessera
          </span>
          <p className="tagline">
            Volunteers train one pipeline stage of an open language model in their browser tab, and earn ownership
            shares of that model for the verified work.
          </p>
        </div>
      </header>
      <main className="wrap" data-phase={phase} data-route={route}>
        <h1 ref={heading} tabIndex={-1}>
          {title}
        </h1>
        {route === 'gpu' && <GpuPage />}
        {route === 'volunteer' && <VolunteerPage />}
        {route === 'researcher' && (
          <Suspense fallback={<Loading what="Researcher" />}>
            <ResearcherPage />
          </Suspense>
        )}
        {route === 'leaderboards' && (
          <Suspense fallback={<Loading what="Leaderboards" />}>
            <LeaderboardsPage />
          </Suspense>
        )}
        {route === 'holder' && (
          <Suspense fallback={<Loading what="Holder" />}>
            <HolderPage />
          </Suspense>
        )}
      </main>
      {/* After <main> in the source, shown under the header (styles.css): Tab reaches the page's own controls
          first (e.g. "Reconnect GPU" when the device is lost), then the other page. */}
      <nav className="site-nav" aria-label="Pages">
        <div className="wrap site-nav-inner">
          {ROUTES.map((r) => (
            <a key={r.route} href={r.href} aria-current={r.route === route ? 'page' : undefined}>
              {r.title}
            </a>
          ))}
        </div>
      </nav>
    </>
  );
}
