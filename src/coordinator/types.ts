import type { RunSpec } from '../train/run-spec.ts';
import type { MetricRecord, ThroughputPoint } from '../wire/index.ts';

/** Records the coordinator keeps in SQLite (times are milliseconds since the epoch). */

export interface ModelRecord {
  /** URL-safe id: lowercase letters, digits and '-'. */
  id: string;
  name: string;
  /** The model and how it trains; what the API shows of it (layout, codec, …) is derived from this. */
  spec: RunSpec;
  createdAt: number;
}

export const PEER_KINDS = ['node', 'browser'] as const;
export type PeerKind = (typeof PEER_KINDS)[number];
export type PeerStatus = 'alive' | 'gone';

export interface PeerRecord {
  peerId: string;
  kind: PeerKind;
  /** Measured tokens/s of the reference workload (proportional to the peer's training FLOP/s). */
  tokensPerSecond: number;
  /** The model this peer asked to train, if any. */
  preferModel: string | null;
  lastSeen: number;
  status: PeerStatus;
  joinedAt: number;
}

export interface AssignmentRecord {
  modelId: string;
  stage: number;
  replica: number;
  peerId: string;
  /** When the peer took this (stage, replica). */
  since: number;
}

export const STEP_STATUSES = ['running', 'done', 'failed'] as const;
export type StepStatus = (typeof STEP_STATUSES)[number];

export interface StepRecord {
  modelId: string;
  step: number;
  status: StepStatus;
  loss: number | null;
  tokens: number | null;
  startedAt: number;
  finishedAt: number | null;
}

// Metrics are answered as they are stored: the wire shapes are the records.
export { METRIC_KINDS, type MetricKind } from '../wire/index.ts';
export type { MetricRecord, ThroughputPoint };

export interface EventRecord {
  id: number;
  at: number;
  kind: string;
  detail: Record<string, unknown>;
}

export type LogLevel = 'info' | 'warn' | 'error';
/** Where the coordinator writes what it does and every error it answers (default: the console). */
export type Logger = (level: LogLevel, message: string, detail?: Record<string, unknown>) => void;

export const consoleLogger: Logger = (level, message, detail) => {
  const line = `[coordinator] ${message}${detail ? ' ' + JSON.stringify(detail) : ''}`;
  if (level === 'error') console.error(line);
  else if (level === 'warn') console.warn(line);
  else console.log(line);
};
