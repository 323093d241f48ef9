/**
 * What tests/browser/researcher-server.ts sets up, shared with the spec (no coordinator imports: the spec runs without
 * WGSL loaders).
 */
export const RESEARCH_MODEL = {
  id: 'research-test',
  name: 'Research test (2 stages)',
  config: { vocab: 1024, dModel: 16, heads: 2, layers: 2, context: 32 },
  layout: [1, 1],
  codec: 'int8',
  microBatches: 2,
  batch: 2,
  pricePer1kTokens: 0.0002,
};
export const TEAM_NAME = 'Night owls';
/** Steps recorded before the page opens (training loss each, validation every 5th). */
export const STEPS = 20;

export interface ResearchFixture {
  app: string;
  coordinator: string;
  modelId: string;
  peers: Array<{ id: string; stage: number; replica: number }>;
  teamId: string;
  /** With --chain: where anvil listens. */
  rpcUrl?: string;
  chainId?: number;
}

/** Token ids the --chain stack's stand-in generator emits, in order. */
export const STAND_IN_TOKENS = [300, 301, 302, 303, 304, 305, 306, 307, 308, 309, 310, 311];
