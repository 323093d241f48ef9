import { Fragment, useState } from 'react';
import type { Comparison } from '../../ops/compare.ts';
import type { SelfTestReport } from '../../ops/selftest.ts';
import { formatCount, formatErr, formatMs, formatTol, formatValue } from '../format.ts';
import { explainOpError } from '../problems.ts';
import { registeredOps, useAppStore, type SelfTestState } from '../store.ts';
import { RichText } from './RichText.tsx';
import { num, TableHead } from './TableHead.tsx';

const COLUMNS = 5;

function tolerance(c: Comparison): string {
  return `${formatTol(c.tolerance.atol)} + ${formatTol(c.tolerance.rtol)}·|ref|`;
}

function Mismatches({ c }: { c: Comparison }) {
  return (
    <tr className="mismatch-row">
      <td colSpan={COLUMNS}>
        <details open>
          <summary>
            {formatCount(c.mismatchCount)} of {formatCount(c.count)} values outside tolerance; first{' '}
            {c.firstMismatches.length}:
          </summary>
          <table className="mismatches">
            <TableHead columns={['index', 'GPU', 'reference', '|err|']} />
            <tbody>
              {c.firstMismatches.map((m) => (
                <tr key={m.index}>
                  <td>{m.index}</td>
                  <td>{formatValue(m.got)}</td>
                  <td>{formatValue(m.want)}</td>
                  <td>{formatErr(Math.abs(m.got - m.want))}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </details>
      </td>
    </tr>
  );
}

function OpRows({ op, report, running }: { op: string; report?: SelfTestReport; running: boolean }) {
  const problem = report?.error ? explainOpError(report.error) : undefined;
  // An op cut short by a lost device says nothing about the kernel; the notice above explains the loss.
  const interrupted = problem?.kind === 'device-lost';
  const failed = Boolean(
    report && !interrupted && (report.error || report.results.length === 0 || report.results.some((c) => !c.pass)),
  );
  const state = !report ? (running ? 'running' : 'waiting') : interrupted ? 'interrupted' : failed ? 'fail' : 'pass';
  // Passing ops fold to one line; a failing op opens so its mismatches are in view.
  const [open, setOpen] = useState<boolean | undefined>(undefined);
  const expanded = open ?? failed;
  const results = report?.results ?? [];
  const worst = results.reduce((m, c) => Math.max(m, c.maxAbsErr), 0);
  const tols = new Set(results.map(tolerance));
  const casesId = `cases-${op}`;
  return (
    <tbody className={`op op-${state}`} data-op={op} data-state={state}>
      <tr className="op-row">
        <th scope="rowgroup">
          {results.length > 0 ? (
            <button
              type="button"
              className="op-toggle"
              aria-expanded={expanded}
              aria-controls={casesId}
              onClick={() => setOpen(!expanded)}
            >
              <span className="chevron" aria-hidden="true" />
              <span className="op-name">{op}</span>
              <span className="op-count">
                {results.length} checks<span className="op-time-inline"> · {report ? formatMs(report.ms) : ''}</span>
              </span>
            </button>
          ) : (
            <span className="op-name op-name-plain">{op}</span>
          )}
        </th>
        <td>
          <span className={`pill pill-${state}`}>{state === 'running' ? 'running…' : state}</span>
        </td>
        <td className="num">{results.length ? formatErr(worst) : ''}</td>
        <td className="num tol">{tols.size === 1 ? [...tols][0] : tols.size > 1 ? 'per check' : ''}</td>
        <td className="num time">{report ? formatMs(report.ms) : ''}</td>
      </tr>
      {problem && !interrupted && (
        <tr className="op-error">
          <td colSpan={COLUMNS}>
            <strong>{problem.title}.</strong> <code className="wrap">{problem.message}</code>
            <br />
            <RichText text={problem.advice} />
          </td>
        </tr>
      )}
      {report && !report.error && results.length === 0 && (
        <tr className="op-error">
          <td colSpan={COLUMNS}>This check compared nothing, so it cannot pass.</td>
        </tr>
      )}
      {expanded &&
        results.map((c, i) => (
          <Fragment key={c.name}>
            <tr
              className={`case ${c.pass ? 'case-pass' : 'case-fail'}`}
              data-case={c.name}
              data-pass={c.pass}
              id={i === 0 ? casesId : undefined}
            >
              <th scope="row" className="case-name">
                {c.name}
                <span className="case-count">{formatCount(c.count)} values</span>
              </th>
              <td>
                <span className={`mark ${c.pass ? 'mark-pass' : 'mark-fail'}`}>{c.pass ? 'pass' : 'FAIL'}</span>
              </td>
              <td className="num">{formatErr(c.maxAbsErr)}</td>
              <td className="num tol">{tolerance(c)}</td>
              <td className="time" />
            </tr>
            {!c.pass && <Mismatches c={c} />}
          </Fragment>
        ))}
    </tbody>
  );
}

function Verdict({ t }: { t: SelfTestState }) {
  const cases = t.reports.flatMap((r) => r.results);
  if (t.status === 'running') {
    return (
      <div className="progress">
        <label htmlFor="selftest-progress">
          {t.current ? (
            <>
              Checking <strong>{t.current}</strong> ({t.done + 1} of {t.total})…
            </>
          ) : (
            'Finishing…'
          )}
        </label>
        <progress id="selftest-progress" max={Math.max(1, t.total)} value={t.done} data-testid="selftest-progress" />
      </div>
    );
  }
  if (t.status === 'aborted') {
    return (
      <p className="verdict verdict-fail">
        The self-test was interrupted because the GPU was lost. Reconnect to run it again.
      </p>
    );
  }
  if (t.status !== 'done') return null;
  if (t.total === 0) return <p className="verdict verdict-fail">No kernel checks are registered yet.</p>;
  if (t.passed) {
    return (
      <p className="verdict verdict-pass" data-testid="verdict">
        <span aria-hidden="true">✓ </span>
        Your GPU computes all {t.reports.length} kernels correctly: {cases.length} checks passed in {formatMs(t.ms)}.
      </p>
    );
  }
  const badOps = t.reports
    .filter((r) => r.error || r.results.length === 0 || r.results.some((c) => !c.pass))
    .map((r) => r.op);
  const badCases = cases.filter((c) => !c.pass).length;
  return (
    <div className="verdict verdict-fail" data-testid="verdict">
      <p>
        <span aria-hidden="true">✗ </span>
        {badOps.length} of {t.reports.length} kernels failed ({badOps.join(', ')})
        {badCases > 0 && `: ${badCases} of ${cases.length} checks out of tolerance`}.
      </p>
      <p className="small">
        Tessera will not train on this device until every check passes. Update your browser and graphics driver and run
        the self-test again; if it still fails, please report the details below.
      </p>
    </div>
  );
}

/** Runs every kernel on small random inputs on this GPU and compares with the float64 CPU reference. */
export function SelfTestPanel() {
  const t = useAppStore((s) => s.selfTest);
  const ready = useAppStore((s) => s.phase === 'ready');
  const run = useAppStore((s) => s.runSelfTest);
  const byOp = new Map(t.reports.map((r) => [r.op, r]));
  const ops = [...registeredOps, ...t.reports.map((r) => r.op).filter((op) => !registeredOps.includes(op))];
  const running = t.status === 'running';
  return (
    <section
      className="card"
      aria-labelledby="selftest-title"
      data-testid="selftest"
      data-status={t.status}
      aria-busy={running}
    >
      <div className="card-head">
        <h2 id="selftest-title">Kernel self-test</h2>
        <button type="button" className="button" onClick={() => void run()} disabled={!ready || running}>
          {t.status === 'idle' ? 'Run self-test' : 'Run again'}
        </button>
      </div>
      <p className="muted small">
        Each training kernel runs forward and backward on seeded random inputs on your GPU; every output is compared
        with a float64 reference computed on the CPU and must satisfy |GPU − reference| ≤ atol + rtol·|reference|.
      </p>
      <div aria-live="polite">
        <Verdict t={t} />
      </div>
      {t.status !== 'idle' && (
        <div className="table-wrap">
          <table className="results">
            <caption className="sr-only">Self-test results per kernel and check</caption>
            <TableHead columns={['Check', 'Result', num('max |err|'), num('tolerance', 'tol'), num('time', 'time')]} />
            {ops.map((op) => (
              <OpRows key={op} op={op} report={byOp.get(op)} running={running && t.current === op} />
            ))}
          </table>
        </div>
      )}
    </section>
  );
}
