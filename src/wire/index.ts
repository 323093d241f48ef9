/**
 * Every JSON shape of the coordinator's HTTP API (src/coordinator/API.md) that peers and the app use, declared
 * once: the coordinator answers with them, the worker client and the app read them. Types and constants only,
 * nothing Node-specific, so the browser bundle can import it.
 */
export type { RunSpec } from '../train/run-spec.ts';
export type {
  Assignment,
  Bottleneck,
  FlatModelProposal,
  JoinAnswer,
  LeaveAnswer,
  ModelDetail,
  ModelProposal,
  ModelSummary,
  PipelinePeer,
  RelayInfo,
  SpecModelProposal,
  StageView,
  TrainingState,
} from './models.ts';
export type {
  LeaderboardBy,
  Leaderboard,
  LeaderboardRow,
  LinkReport,
  PayerBalance,
  PeerCredits,
  Team,
  TeamJoin,
} from './peers.ts';
export { MAX_LINKS } from './peers.ts';
export type {
  Boundary,
  LinkKind,
  MetricKind,
  MetricRecord,
  ThroughputPoint,
  Topology,
  TopologyLink,
  TopologyPeer,
  TopologyStage,
  Verification,
  VerificationEpoch,
} from './researcher.ts';
export { MAX_BODY_BYTES, MAX_RECEIPTS_PER_POST } from './limits.ts';
export { METRIC_KINDS } from './researcher.ts';
export type { EpochDetail, EpochLeaf, EpochReceiptsPage, EpochStatus, EpochSummary } from './settlement.ts';
