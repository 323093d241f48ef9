/** What tests/browser/researcher-server.ts sets up, shared with the spec (no coordinator imports: the spec runs without WGSL loaders). */
export const RESEARCH_MODEL = {
  id: 'research-test',
  name: 'Research test (2 stages)',
  config: { vocab: 1024, dModel: 16, heads: 2, layers: 2, context: 8 },
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
}
