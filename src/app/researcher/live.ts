/**
 * One model's live training view: the history from GET metrics/throughput/topology (so a reload shows the whole
 * run: it lives in the coordinator's database), then the SSE stream GET /api/models/:id/live. While the stream
 * is down (EventSource retries on its own) the page polls instead, so the charts never silently freeze.
 */
import { useEffect, useState } from 'react';
import { api, type MetricRecord, type ThroughputPoint, type Topology } from '../coordinator-api.ts';
import { explainError } from '../errors.ts';
import { mergeMetrics, mergeThroughput } from './shape.ts';

export interface LiveState {
  metrics: MetricRecord[];
  throughput: ThroughputPoint[];
  topology?: Topology;
  /** 'live' while the stream is open; 'polling' while it is down and the page asks every few seconds. */
  stream: 'connecting' | 'live' | 'polling';
  /** The last failure to read something, shown on the card; cleared by the next success. */
  error?: string;
}

const POLL_MS = 5000;

export function useLive(modelId: string): LiveState {
  const [state, setState] = useState<LiveState>({ metrics: [], throughput: [], stream: 'connecting' });
  useEffect(() => {
    let stopped = false;
    let poll: ReturnType<typeof setInterval> | undefined;
    setState({ metrics: [], throughput: [], stream: 'connecting' });
    const update = (f: (s: LiveState) => LiveState) => !stopped && setState(f);
    const fail = (what: string) => (e: unknown) =>
      update((s) => ({ ...s, error: `Cannot read the ${what}: ${explainError(e)}` }));

    const readAll = () => {
      void api
        .metrics(modelId)
        .then(
          (m) => update((s) => ({ ...s, metrics: mergeMetrics(s.metrics, m), error: undefined })),
          fail('loss history'),
        );
      void api
        .throughput(modelId)
        .then(
          (p) => update((s) => ({ ...s, throughput: mergeThroughput(s.throughput, p) })),
          fail('throughput history'),
        );
      void api.topology(modelId).then((t) => update((s) => ({ ...s, topology: t })), fail('topology'));
    };
    readAll();

    const source = new EventSource(`/api/models/${encodeURIComponent(modelId)}/live`);
    const json = <T>(e: Event): T | undefined => {
      try {
        return JSON.parse((e as MessageEvent<string>).data) as T;
      } catch {
        console.warn(`live stream of ${modelId}: an event that is not JSON`, (e as MessageEvent).data);
        return undefined;
      }
    };
    source.addEventListener('open', () => {
      if (poll) clearInterval(poll);
      poll = undefined;
      update((s) => ({ ...s, stream: 'live' }));
    });
    source.addEventListener('error', () => {
      // EventSource reconnects by itself; meanwhile poll so the figures keep moving.
      update((s) => ({ ...s, stream: 'polling' }));
      poll ??= setInterval(readAll, POLL_MS);
    });
    source.addEventListener('snapshot', (e) => {
      const snap = json<{ metrics?: MetricRecord[]; throughput?: ThroughputPoint[] }>(e);
      if (snap)
        update((s) => ({
          ...s,
          metrics: mergeMetrics(s.metrics, snap.metrics ?? []),
          throughput: mergeThroughput(s.throughput, snap.throughput ?? []),
        }));
    });
    source.addEventListener('metric', (e) => {
      const m = json<MetricRecord>(e);
      if (m) update((s) => ({ ...s, metrics: mergeMetrics(s.metrics, [m]) }));
    });
    source.addEventListener('throughput', (e) => {
      const p = json<ThroughputPoint>(e);
      if (p) update((s) => ({ ...s, throughput: mergeThroughput(s.throughput, [p]) }));
    });
    source.addEventListener('topology', (e) => {
      const t = json<Topology>(e);
      if (t) update((s) => ({ ...s, topology: t }));
    });
    return () => {
      stopped = true;
      source.close();
      if (poll) clearInterval(poll);
    };
  }, [modelId]);
  return state;
}
