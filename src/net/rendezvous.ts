/**
 * How the workers of a new pipeline configuration find each other before they train (worker/reconfigure.ts): direct
 * WebRTC to every other worker, the paused statuses of all of them (or the resume point one of them already
 * decided), and the barrier that holds every worker until all are ready for the new round. Every wait ends
 * when the configuration's signal aborts (the pipeline changed again) or after a deadline.
 */
import type { Libp2p } from 'libp2p';
import { TesseraError } from '../errors.ts';
import { dialWebRTC } from './node.ts';
import { queryStatus, type Resume, type StatusRequest, type SyncStatus } from './swarm-sync.ts';

/** The configuration in progress was abandoned (the pipeline changed, a worker left it, or the worker stops). */
export class Reconfigure extends TesseraError {
  constructor(message: string, options?: ErrorOptions) {
    super('reconfigure', message, options);
  }
}

const reasonOf = (signal?: AbortSignal) => String(signal?.reason?.message ?? signal?.reason);

export const short = (peer: string) => peer.slice(-6);

/** Resolves after `ms`, or rejects with Reconfigure when `signal` aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(new Reconfigure(reasonOf(signal)));
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(new Reconfigure(reasonOf(signal)));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Settles like `p`, or rejects with Reconfigure as soon as `signal` aborts. */
export function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(new Reconfigure(reasonOf(signal)));
    // Handlers go on `p` first, so its later failure is never unhandled, whatever the signal did.
    p.then(
      (v) => (signal.removeEventListener('abort', onAbort), resolve(v)),
      (e) => (signal.removeEventListener('abort', onAbort), reject(e)),
    );
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

export interface Rendezvous {
  node: Libp2p;
  relayAddr: string;
  /** This worker's peer id. */
  self: string;
  /** The other workers of the new pipeline. */
  members: string[];
  layout: string;
  signal: AbortSignal;
  log: (line: string) => void;
}

/**
 * Direct WebRTC to every other worker: the peer with the larger id dials (again whenever a dial fails: cold
 * WebRTC dials sometimes time out), the other waits to be dialled.
 */
export async function connectAll(r: Rendezvous): Promise<void> {
  const { node, relayAddr, members, signal } = r;
  const direct = (p: string) =>
    node.getConnections().some((c) => c.remotePeer.toString() === p && c.status === 'open' && c.limits === undefined);
  const dialling = new Set<string>();
  const deadline = Date.now() + 60_000;
  for (;;) {
    const missing = members.filter((p) => !direct(p));
    if (!missing.length) break;
    if (Date.now() > deadline) throw new Error(`no direct connection to ${missing.map(short).join(', ')} after 60 s`);
    for (const p of missing.filter((x) => x < r.self && !dialling.has(x))) {
      dialling.add(p);
      dialWebRTC(node, relayAddr, p, 10_000)
        .catch((e: Error) => r.log(`dialling ${short(p)}: ${e.message}`))
        .finally(() => dialling.delete(p));
    }
    await sleep(200, signal);
  }
  r.log(`connected to ${members.length} peer(s) over WebRTC`);
}

async function ask(r: Rendezvous, peer: string, req: StatusRequest): Promise<SyncStatus | undefined> {
  try {
    return await queryStatus(r.node, peer, req, { signal: r.signal, timeoutMs: 5000 });
  } catch {
    if (r.signal.aborted) throw new Reconfigure(reasonOf(r.signal));
    return undefined; // not reachable yet, or gone: asked again
  }
}

/**
 * Statuses of every other worker, all paused in this layout; or the resume point one of them is already ready
 * for, when it is a later round than `round` (this worker's last) that has not stepped yet: it was decided from
 * statuses that included this worker's, and waits for it. (A round that has stepped did so with every member, so
 * it did not wait for this worker: this one restarted, or failed out of it, with its seat kept — the others pause
 * once their step misses it, and all agree again.) `model` names the model in the requests.
 */
export async function collectStatuses(
  r: Rendezvous,
  model: string,
  round: number,
): Promise<{ statuses: Map<string, SyncStatus>; adopt?: Resume }> {
  const statuses = new Map<string, SyncStatus>();
  const req: StatusRequest = { type: 'status', model, layout: r.layout, phase: 'paused', round };
  const deadline = Date.now() + 120_000;
  for (let pass = 0; ; pass++) {
    const pending = r.members.filter((p) => !statuses.has(p));
    const answers = await Promise.all(pending.map((p) => ask(r, p, req)));
    let adopt: Resume | undefined;
    answers.forEach((st, i) => {
      if (!st || st.layout !== r.layout) return;
      if (st.phase === 'paused') statuses.set(pending[i], st);
      else if (
        (st.phase === 'ready' || st.phase === 'training') &&
        st.resume &&
        st.resume.round > round &&
        !st.held.some((h) => !h.stored && h.step !== st.resume!.step)
      ) {
        statuses.set(pending[i], st);
        adopt ??= st.resume;
      }
    });
    if (adopt) return { statuses, adopt };
    if (statuses.size === r.members.length) return { statuses };
    const missing = () =>
      r.members
        .filter((p) => !statuses.has(p))
        .map(short)
        .join(', ');
    if (Date.now() > deadline) throw new Error(`no status from ${missing()} within 120 s`);
    if (pass === 20) r.log(`waiting for ${missing()} to pause in this layout`);
    await sleep(150, r.signal);
  }
}

/**
 * Statuses of peers handing a stage of the model off (they left the pipeline gracefully and wait, for a while,
 * to be fetched from: src/coordinator/departures.ts). Every worker of the new pipeline dials them itself and asks
 * once more on failure; a holder that cannot be reached is left out (it may be gone already). Their statuses
 * are frozen (they no longer train), so every asker that reaches one reads the same.
 */
export async function departingStatuses(
  r: Rendezvous,
  model: string,
  round: number,
  departing: readonly string[],
): Promise<Map<string, SyncStatus>> {
  const req: StatusRequest = { type: 'status', model, layout: r.layout, phase: 'paused', round };
  const out = new Map<string, SyncStatus>();
  await Promise.all(
    departing.map(async (p) => {
      for (let attempt = 0; attempt < 2 && !out.has(p); attempt++) {
        try {
          await dialWebRTC(r.node, r.relayAddr, p, 10_000);
          const st = await ask(r, p, req);
          if (st) out.set(p, st);
        } catch (e) {
          if (r.signal.aborted) throw new Reconfigure(reasonOf(r.signal));
          r.log(`departing holder ${short(p)}: ${(e as Error).message}`);
        }
      }
    }),
  );
  return out;
}

/**
 * Waits until every other worker is ready for (or training in) `round`; a worker that went back to pausing abandons it.
 */
export async function awaitReady(r: Rendezvous, model: string, round: number): Promise<void> {
  const req: StatusRequest = { type: 'status', model, layout: r.layout, phase: 'ready', round };
  const deadline = Date.now() + 120_000;
  let pending = r.members;
  while (pending.length) {
    const answers = await Promise.all(pending.map((p) => ask(r, p, req)));
    const left = answers.findIndex((st) => st?.layout === r.layout && st.phase === 'paused' && st.round >= round);
    if (left >= 0) throw new Reconfigure(`${short(pending[left])} left round ${round} before it started`);
    pending = pending.filter((_, i) => {
      const st = answers[i];
      return !(
        st &&
        st.layout === r.layout &&
        (st.phase === 'ready' || st.phase === 'training') &&
        st.resume?.round === round
      );
    });
    if (!pending.length) return;
    if (Date.now() > deadline)
      throw new Error(`${pending.map(short).join(', ')} not ready for round ${round} within 120 s`);
    await sleep(100, r.signal);
  }
}
