/**
 * Pure shaping of the coordinator's answers into what the Researcher page draws: loss and throughput series
 * for recharts, the topology as @xyflow/react nodes and edges, the codec table's rows. No React here, so
 * every rule is unit-tested (tests/app/researcher.test.ts).
 */
import type { Edge, Node } from '@xyflow/react';
import { formatRate, formatTokensPerSecond, plural } from '../format.ts';
import type {
  Boundary,
  MetricRecord,
  ThroughputPoint,
  Topology,
  TopologyPeer,
  TopologyStage,
} from '../coordinator-api.ts';

/** How many records a chart keeps: a long run's early steps fall off the left, the database keeps them all. */
export const KEEP_POINTS = 2000;

export interface LossPoint {
  step: number;
  train?: number;
  val?: number;
}

/** New metric records added to the known ones: one per (step, kind) — a re-sent record replaces, never doubles. */
export function mergeMetrics(
  known: readonly MetricRecord[],
  incoming: readonly MetricRecord[],
  keep = KEEP_POINTS,
): MetricRecord[] {
  const byKey = new Map<string, MetricRecord>();
  for (const m of [...known, ...incoming]) {
    if (!Number.isFinite(m.value) || !Number.isInteger(m.step)) continue;
    byKey.set(`${m.kind}:${m.step}`, m);
  }
  return [...byKey.values()].sort((a, b) => a.step - b.step || a.kind.localeCompare(b.kind)).slice(-keep);
}

/** One point per step with its train and/or validation loss, in step order (recharts joins each line over gaps). */
export function lossSeries(metrics: readonly MetricRecord[]): LossPoint[] {
  const bySteps = new Map<number, LossPoint>();
  for (const m of metrics) {
    const p = bySteps.get(m.step) ?? { step: m.step };
    p[m.kind] = m.value;
    bySteps.set(m.step, p);
  }
  return [...bySteps.values()].sort((a, b) => a.step - b.step);
}

export function mergeThroughput(
  known: readonly ThroughputPoint[],
  incoming: readonly ThroughputPoint[],
  keep = KEEP_POINTS,
): ThroughputPoint[] {
  const byStep = new Map<number, ThroughputPoint>();
  for (const p of [...known, ...incoming])
    if (Number.isFinite(p.tokensPerSecond) && p.tokensPerSecond >= 0) byStep.set(p.step, p);
  return [...byStep.values()].sort((a, b) => a.step - b.step).slice(-keep);
}

/** The latest figures, for the text beside the charts (and screen readers, which get no chart). */
export function latest(metrics: readonly MetricRecord[], kind: 'train' | 'val'): MetricRecord | undefined {
  for (let i = metrics.length - 1; i >= 0; i--) if (metrics[i].kind === kind) return metrics[i];
  return undefined;
}

/** Mean tokens/s over the last `n` steps: single steps jitter. */
export function recentThroughput(points: readonly ThroughputPoint[], n = 10): number | undefined {
  const tail = points.slice(-n);
  if (tail.length === 0) return undefined;
  return tail.reduce((a, p) => a + p.tokensPerSecond, 0) / tail.length;
}

// ---- topology ----

/** Room between columns for a link's label (nodes are 190 px wide, see .topo-peer). */
export const COLUMN_WIDTH = 340;
export const ROW_HEIGHT = 110;
export const HEADER_HEIGHT = 60;

export interface StageHeaderData extends Record<string, unknown> {
  label: string;
  detail: string;
}

export interface PeerNodeData extends Record<string, unknown> {
  peerId: string;
  label: string;
  kind: 'node' | 'browser';
  replica: number;
  speed: string;
  team: string | null;
}

export type TopologyNode = Node<StageHeaderData, 'stage'> | Node<PeerNodeData, 'peer'>;

export function stageLabel(
  s: Pick<TopologyStage, 'index' | 'firstLayer' | 'endLayer' | 'hasEmbedding' | 'hasHead'>,
): string {
  const layers =
    s.endLayer - s.firstLayer === 1 ? `layer ${s.firstLayer + 1}` : `layers ${s.firstLayer + 1}–${s.endLayer}`;
  const extra = [s.hasEmbedding && 'embedding', s.hasHead && 'head'].filter(Boolean).join(' + ');
  return extra ? `${layers} + ${extra}` : layers;
}

export function linkLabel(bytesPerSecond: number, rttMs: number | null): string {
  return rttMs === null || !Number.isFinite(rttMs)
    ? formatRate(bytesPerSecond)
    : `${formatRate(bytesPerSecond)} · ${Math.round(rttMs)} ms`;
}

/** Every Ed25519 peer id starts "12D3KooW": the tail is what tells peers apart in a small box. */
function peerLabel(p: TopologyPeer): string {
  return `${p.kind === 'browser' ? 'Browser' : 'Node'} ${p.peerId.length > 12 ? `…${p.peerId.slice(-8)}` : p.peerId}`;
}

/**
 * Stages as columns (a header node on top), their peers below in replica order; pipeline links between
 * neighbouring columns and sync links between replicas of one stage, each labelled with its measured
 * bandwidth and round trip. A link to a peer no longer in the topology is left out (it left since).
 */
export function topologyGraph(t: Topology): { nodes: TopologyNode[]; edges: Edge[] } {
  const nodes: TopologyNode[] = [];
  const where = new Map<string, { stage: number; row: number }>();
  const stages = [...t.stages].sort((a, b) => a.index - b.index);
  for (const s of stages) {
    const x = s.index * COLUMN_WIDTH;
    nodes.push({
      id: `stage-${s.index}`,
      type: 'stage',
      position: { x, y: 0 },
      draggable: false,
      selectable: false,
      focusable: false,
      data: { label: `Stage ${s.index + 1}`, detail: stageLabel(s) },
    });
    const peers = [...s.peers].sort((a, b) => a.replica - b.replica);
    peers.forEach((p, row) => {
      where.set(p.peerId, { stage: s.index, row });
      nodes.push({
        id: p.peerId,
        type: 'peer',
        position: { x, y: HEADER_HEIGHT + row * ROW_HEIGHT },
        draggable: false,
        data: {
          peerId: p.peerId,
          label: peerLabel(p),
          kind: p.kind,
          replica: p.replica,
          speed: formatTokensPerSecond(p.tokensPerSecond),
          team: p.team,
        },
      });
    });
  }
  const edges: Edge[] = [];
  const seen = new Set<string>();
  for (const l of t.links) {
    const a = where.get(l.from);
    const b = where.get(l.to);
    if (a === undefined || b === undefined || l.from === l.to) continue;
    // Draw each pipeline link left to right and each sync link top to bottom, once whichever end reported it.
    const forward = l.kind === 'pipeline' ? a.stage <= b.stage : a.row <= b.row;
    const [from, to] = forward ? [l.from, l.to] : [l.to, l.from];
    const id = `${l.kind}:${from}->${to}`;
    if (seen.has(id)) continue;
    seen.add(id);
    edges.push({
      id,
      source: from,
      target: to,
      label: linkLabel(l.bytesPerSecond, l.rttMs),
      type: l.kind === 'pipeline' ? 'default' : 'smoothstep',
      sourceHandle: l.kind === 'pipeline' ? 'right' : 'bottom',
      targetHandle: l.kind === 'pipeline' ? 'left' : 'top',
      className: `link-${l.kind}`,
      data: { kind: l.kind },
    });
  }
  return { nodes, edges };
}

/** Plain-text description of the topology, for screen readers and as the diagram's fallback. */
export function topologySummary(t: Topology): string {
  if (t.stages.length === 0) return 'No stages.';
  const peers = t.stages.reduce((a, s) => a + s.peers.length, 0);
  const empty = t.stages.filter((s) => s.peers.length === 0).map((s) => s.index + 1);
  const links = plural(t.links.length, 'measured link');
  const parts = `${plural(t.stages.length, 'stage')}, ${plural(peers, 'peer')}, ${links}`;
  return `${parts}${empty.length ? `; stage ${empty.join(', ')} ha${empty.length === 1 ? 's' : 've'} no holder` : ''}.`;
}

// ---- codec table ----

export interface CodecRow {
  boundary: string;
  codec: string;
  measured: number | null;
  raw: number;
  /** raw / measured: how many times smaller than float32 activations and gradients. */
  ratio: number | null;
}

export function codecRows(boundaries: readonly Boundary[]): CodecRow[] {
  return [...boundaries]
    .sort((a, b) => a.after - b.after)
    .map((b) => ({
      boundary: `Stage ${b.after + 1} → ${b.after + 2}`,
      codec: b.codec,
      measured: b.bytesPerToken,
      raw: b.rawBytesPerToken,
      ratio: b.bytesPerToken !== null && b.bytesPerToken > 0 ? b.rawBytesPerToken / b.bytesPerToken : null,
    }));
}
