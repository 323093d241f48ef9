/** What the Researcher page reads: metrics, throughput, the topology diagram and verification per epoch. */

export const METRIC_KINDS = ['train', 'val'] as const;
export type MetricKind = (typeof METRIC_KINDS)[number];

export interface MetricRecord {
  /** Increasing cursor: `?since=<id>` returns later records. */
  id: number;
  modelId: string;
  step: number;
  kind: MetricKind;
  value: number;
  at: number;
}

/** A done step's training speed: its tokens over its duration. */
export interface ThroughputPoint {
  step: number;
  /** When the step finished. */
  at: number;
  tokensPerSecond: number;
}

export interface TopologyPeer {
  peerId: string;
  replica: number;
  kind: 'node' | 'browser';
  tokensPerSecond: number;
  team: string | null;
}

export interface TopologyStage {
  index: number;
  firstLayer: number;
  endLayer: number;
  hasEmbedding: boolean;
  hasHead: boolean;
  peers: TopologyPeer[];
}

export type LinkKind = 'pipeline' | 'sync';

export interface TopologyLink {
  from: string;
  to: string;
  kind: LinkKind;
  /** Bytes/s `from` sent to `to` between its last two reports (0 until two reports arrived). */
  bytesPerSecond: number;
  rttMs: number | null;
  at: number;
}

export interface Boundary {
  /** Between stage `after` and stage `after + 1`. */
  after: number;
  codec: string;
  /** Measured activation + gradient bytes per token over this boundary; null until measured. */
  bytesPerToken: number | null;
  /** Uncompressed float32 activation + gradient: dModel · 4 · 2. */
  rawBytesPerToken: number;
}

export interface Topology {
  modelId: string;
  stages: TopologyStage[];
  links: TopologyLink[];
  boundaries: Boundary[];
}

export interface VerificationEpoch {
  epoch: number;
  /** 'pending': the open epoch, judged now as settlement would judge it. */
  status: 'settled' | 'pending';
  units: number;
  audited: number;
  mismatches: number;
  caught: string[];
  share: number;
}

export interface Verification {
  modelId: string;
  epochs: VerificationEpoch[];
  totals: { units: number; audited: number; mismatches: number; share: number };
}
