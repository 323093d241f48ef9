export { Coordinator, type CoordinatorOptions, type RelayHandle } from './coordinator.ts';
export { assign, bottleneckCapacity, compareCapacities, stageCapacities } from './assignment.ts';
export type {
  AssignModel,
  AssignOptions,
  AssignPeer,
  AssignResult,
  Move,
  MoveReason,
  Placement,
} from './assignment.ts';
export {
  DEFAULT_RATE_LIMITS,
  HttpRules,
  sameSecret,
  type HttpRulesOptions,
  type RateLimit,
  type RateLimits,
} from './http-guard.ts';
export { Membership, type JoinRequest, type MembershipOptions } from './membership.ts';
export { REFERENCE_CONFIG, REFERENCE_FLOPS_PER_TOKEN } from './registry.ts';
export { Store, SCHEMA_VERSION } from './store.ts';
export * from './errors.ts';
export * from './types.ts';
export { Validation, heldOutBatch, type EvaluateFn, type EvaluationOptions } from './evaluation.ts';
export { recentAverage, RAC_HALF_LIFE_MS } from './credits.ts';
export { teamJoinMessage } from './teams.ts';
