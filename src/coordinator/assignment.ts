/**
 * Stage assignment: which peer trains which stage of which model. A pure function of (models, peers, current
 * assignment), so it is tested by its properties and the coordinator just stores what it returns.
 *
 * Capacity of a stage = Σ throughput of its peers / the stage's training FLOPs per token. Peers report
 * tokens/s of one reference workload, proportional to their FLOP/s, so capacity is proportional to the
 * tokens/s the stage sustains; replicas of a stage split its micro-batches (data parallel) and add up.
 * A pipeline runs at its slowest stage (the bottleneck), so the goal is, in order:
 *   1. cover every stage of every model (a model with an uncovered stage cannot train at all);
 *   2. redundancy: REDUNDANCY (2) holders per stage whenever the model has the peers, before any stage gets a
 *      third — a stage whose only holder vanishes has lost its weights and optimizer state, a throughput loss
 *      is only slower training. With P peers on S stages that is Σ min(replicas, 2) = min(P, 2S). Which stages
 *      get the second replica when P < 2S is left to goal 3: the arrangement with the best capacities wins, so
 *      the spare peers double the slowest stages (every single-holder stage is equally at risk — one peer's
 *      departure — so nothing else tells them apart). Peers placed in this call go where redundancy needs them
 *      first; a peer already placed moves for it only from a stage with three or more replicas.
 *   3. raise each model's bottleneck, then even out the rest (compare capacities sorted ascending);
 *   4. stability: a peer already placed moves only if that raises its model's bottleneck by ≥ minGain (20%),
 *      because a move costs a transfer of the stage's weights and optimizer state (and then only the peers
 *      the gain needs move); covering a stage that lost its last peer (SWARM-style, from a stage with surplus)
 *      or giving a stage its second replica always justifies one.
 * And one rule above all: a stage that has holders (peers placed on it before this call, so holding its state)
 * keeps at least one of them. No cover, rebalance or swap moves a stage's last holder away, since that would
 * lose the stage as surely as its departure (a newcomer on it has nothing to fetch the stage from).
 * A peer holds at most one stage overall in this version (so never two stages of one model).
 */

export interface AssignModel {
  id: string;
  /** Training FLOPs per token of each stage (> 0). */
  stageCosts: readonly number[];
}

export interface AssignPeer {
  id: string;
  /** Measured tokens/s of the reference workload; a peer without a positive, finite one is not placed. */
  tokensPerSecond: number;
  alive: boolean;
  /** Model the peer asked for; otherwise it goes where it is most needed. */
  preferModel?: string | null;
}

export interface Placement {
  modelId: string;
  stage: number;
  /** Index among the stage's replicas; kept while the peer stays, gaps are allowed. */
  replica: number;
  peerId: string;
}

/**
 * join: newly placed; leave: dropped (gone, or its model vanished); cover: moved to a stage that had no peer;
 * replicate: moved to give a stage its second replica; rebalance: moved for capacity.
 */
export type MoveReason = 'join' | 'leave' | 'cover' | 'replicate' | 'rebalance';

export interface Move {
  peerId: string;
  from: Placement | null;
  to: Placement | null;
  reason: MoveReason;
}

export interface AssignOptions {
  /** Least relative bottleneck gain that justifies moving an already-placed peer (default 0.2). */
  minGain?: number;
}

export interface AssignResult {
  assignments: Placement[];
  moves: Move[];
}

/** Replicas every stage gets (when its model has the peers) before any stage gets more. */
export const REDUNDANCY = 2;

/** How redundant a model is: Σ over its stages of min(replicas, REDUNDANCY); at most min(peers, 2 × stages). */
export function redundancyScore(counts: readonly number[]): number {
  return counts.reduce((t, c) => t + Math.min(c, REDUNDANCY), 0);
}

/** Relative tolerance of capacity comparisons, so float noise never justifies a move. */
const EPS = 1e-9;
/** Models with more peers than this skip the cubic one-for-two trades of the local search. */
const TRADE_LIMIT = 48;

/** Capacity of each stage of `model` under `assignments` (peers not in `speeds` count as 0). */
export function stageCapacities(
  model: AssignModel,
  assignments: readonly Placement[],
  speeds: ReadonlyMap<string, number>,
): number[] {
  const sums = model.stageCosts.map(() => 0);
  for (const a of assignments) {
    if (a.modelId === model.id && a.stage >= 0 && a.stage < sums.length) sums[a.stage] += speeds.get(a.peerId) ?? 0;
  }
  return sums.map((s, i) => s / model.stageCosts[i]);
}

/** The capacity the model's pipeline runs at: its slowest stage's (0 when a stage has no peer). */
export function bottleneckCapacity(
  model: AssignModel,
  assignments: readonly Placement[],
  speeds: ReadonlyMap<string, number>,
): number {
  return Math.min(...stageCapacities(model, assignments, speeds));
}

/** −1, 0, 1: compares capacity vectors by their ascending sort (the larger minimum wins, then the next...). */
export function compareCapacities(a: readonly number[], b: readonly number[]): number {
  const x = [...a].sort((p, q) => p - q);
  const y = [...b].sort((p, q) => p - q);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (Math.abs(x[i] - y[i]) > EPS * Math.max(Math.abs(x[i]), Math.abs(y[i]))) return x[i] < y[i] ? -1 : 1;
  }
  return 0;
}

interface Spot {
  modelId: string;
  stage: number;
}

/** Mutable working state of one assign() call. */
class Plan {
  readonly models: readonly AssignModel[];
  readonly modelById: Map<string, AssignModel>;
  readonly speed: Map<string, number>;
  readonly prefer: Map<string, string | null>;
  /** modelId → stage → peer ids. */
  readonly members = new Map<string, string[][]>();
  readonly where = new Map<string, Spot>();
  /** Peers whose current placement was kept: moving them needs a real gain. */
  readonly anchored = new Set<string>();
  /** Peers moved to cover a stage that had none (their move's reason). */
  readonly coverers = new Set<string>();
  /** Anchored peers that move anyway in this call: moving them again costs no extra transfer. */
  readonly moving = new Set<string>();
  /** Peers moved to give a stage its second replica (their move's reason, unless they covered). */
  readonly replicators = new Set<string>();
  /** Where each anchored peer was placed before this call: the stage whose state it holds. */
  readonly home = new Map<string, Spot>();
  /** Stages (model \0 stage) that had a holder at the start: each must keep one. */
  readonly held = new Set<string>();

  constructor(models: readonly AssignModel[], speed: Map<string, number>, prefer: Map<string, string | null>) {
    this.models = models;
    this.modelById = new Map(models.map((m) => [m.id, m]));
    this.speed = speed;
    this.prefer = prefer;
    for (const m of models)
      this.members.set(
        m.id,
        m.stageCosts.map(() => []),
      );
  }

  place(peer: string, spot: Spot): void {
    this.members.get(spot.modelId)![spot.stage].push(peer);
    this.where.set(peer, spot);
  }

  unplace(peer: string): void {
    const spot = this.where.get(peer)!;
    const list = this.members.get(spot.modelId)![spot.stage];
    list.splice(list.indexOf(peer), 1);
    this.where.delete(peer);
  }

  /** Anchors `peer` where it is: it holds that stage's state. */
  anchor(peer: string, spot: Spot): void {
    this.place(peer, spot);
    this.anchored.add(peer);
    this.home.set(peer, spot);
    this.held.add(`${spot.modelId}\0${spot.stage}`);
  }

  /** `peer` holds the state of stage `stage` of `modelId` (it was placed there before this call). */
  holds(peer: string, modelId: string, stage: number): boolean {
    const h = this.home.get(peer);
    return h !== undefined && h.modelId === modelId && h.stage === stage;
  }

  hadHolder(modelId: string, stage: number): boolean {
    return this.held.has(`${modelId}\0${stage}`);
  }

  /** Holders of the stage still on it. */
  holders(modelId: string, stage: number): number {
    return this.members.get(modelId)![stage].filter((p) => this.holds(p, modelId, stage)).length;
  }

  /** Whether `peer` may leave the stage it is on: it is not the stage's last holder. */
  mayLeave(peer: string): boolean {
    const { modelId, stage } = this.where.get(peer)!;
    return !this.holds(peer, modelId, stage) || this.holders(modelId, stage) >= 2;
  }

  counts(modelId: string): number[] {
    return this.members.get(modelId)!.map((ps) => ps.length);
  }

  redundancy(modelId: string): number {
    return redundancyScore(this.counts(modelId));
  }

  /** Stages of the model below REDUNDANCY replicas. */
  underReplicated(modelId: string): number[] {
    return this.counts(modelId).flatMap((c, s) => (c < REDUNDANCY ? [s] : []));
  }

  caps(modelId: string): number[] {
    const m = this.modelById.get(modelId)!;
    return this.members.get(modelId)!.map((ps, s) => ps.reduce((t, p) => t + this.speed.get(p)!, 0) / m.stageCosts[s]);
  }

  uncovered(modelId: string): number[] {
    const m = this.modelById.get(modelId)!;
    const stages = this.members.get(modelId)!.flatMap((ps, s) => (ps.length === 0 ? [s] : []));
    return stages.sort((a, b) => m.stageCosts[b] - m.stageCosts[a] || a - b);
  }

  /**
   * Training compute the model's pipeline runs at (bottleneck tokens/s × FLOPs per token), comparable across models.
   */
  rate(modelId: string): number {
    const total = this.modelById.get(modelId)!.stageCosts.reduce((a, b) => a + b, 0);
    return Math.min(...this.caps(modelId)) * total;
  }

  /**
   * Where a peer without preference goes: models missing the fewest stages first, then the slowest pipeline
   * among those with a stage below REDUNDANCY replicas, then the slowest pipeline.
   */
  mostNeeded(): string {
    let best = this.models[0].id;
    let bestKey: [number, number] = [Infinity, Infinity];
    for (const m of this.models) {
      const missing = this.uncovered(m.id).length;
      const thin = this.underReplicated(m.id).length > 0;
      const key: [number, number] = missing > 0 ? [0, missing] : [thin ? 1 : 2, this.rate(m.id)];
      if (key[0] < bestKey[0] || (key[0] === bestKey[0] && key[1] < bestKey[1])) [best, bestKey] = [m.id, key];
    }
    return best;
  }

  /**
   * The stage a newcomer to `modelId` should take: its costliest uncovered stage, else its slowest stage below
   * REDUNDANCY replicas, else its bottleneck.
   */
  neediestStage(modelId: string): number {
    const open = this.uncovered(modelId);
    if (open.length > 0) return open[0];
    const thin = this.underReplicated(modelId);
    return this.slowest(modelId, thin.length > 0 ? thin : this.counts(modelId).map((_, s) => s));
  }

  /** The stage of `among` with the least capacity (ties: the costlier, then the first). */
  slowest(modelId: string, among: readonly number[]): number {
    const caps = this.caps(modelId);
    const costs = this.modelById.get(modelId)!.stageCosts;
    let best = among[0];
    for (const s of among) if (caps[s] < caps[best] || (caps[s] === caps[best] && costs[s] > costs[best])) best = s;
    return best;
  }
}

/** Assigns alive peers to model stages, keeping `current` where it is good enough. Pure and deterministic. */
export function assign(
  models: readonly AssignModel[],
  peers: readonly AssignPeer[],
  current: readonly Placement[],
  opts: AssignOptions = {},
): AssignResult {
  const minGain = opts.minGain ?? 0.2;
  for (const m of models) {
    if (m.stageCosts.some((c) => !(Number.isFinite(c) && c > 0)))
      throw new RangeError(`model ${m.id}: stage costs must be finite and positive, got [${m.stageCosts}]`);
  }
  const usable = peers.filter((p) => p.alive && Number.isFinite(p.tokensPerSecond) && p.tokensPerSecond > 0);
  const speed = new Map(usable.map((p) => [p.id, p.tokensPerSecond]));
  const prefer = new Map(usable.map((p) => [p.id, p.preferModel ?? null]));
  const plan = new Plan(
    models.filter((m) => m.stageCosts.length > 0),
    speed,
    prefer,
  );

  // The first placement of each peer in `current` is where it comes from (later duplicates are invalid input).
  const origin = new Map<string, Placement>();
  for (const a of current) if (!origin.has(a.peerId)) origin.set(a.peerId, a);

  // 1. Keep valid current placements (alive peer, existing model and stage, not against the peer's preference).
  for (const [peer, a] of origin) {
    const model = plan.modelById.get(a.modelId);
    const wants = prefer.get(peer);
    if (!speed.has(peer) || !model || !Number.isInteger(a.stage) || a.stage < 0 || a.stage >= model.stageCosts.length)
      continue;
    if (wants && wants !== a.modelId && plan.modelById.has(wants)) continue;
    plan.anchor(peer, { modelId: a.modelId, stage: a.stage });
  }

  // 2. Place free peers, fastest first, each where it is most needed (LPT-style greedy).
  const free = usable
    .filter((p) => !plan.where.has(p.id))
    .sort((a, b) => b.tokensPerSecond - a.tokensPerSecond || (a.id < b.id ? -1 : 1));
  if (plan.models.length > 0) {
    for (const p of free) {
      const wants = prefer.get(p.id);
      const modelId = wants && plan.modelById.has(wants) ? wants : plan.mostNeeded();
      plan.place(p.id, { modelId, stage: plan.neediestStage(modelId) });
    }
  }

  // 3. Cover stages that have no peer by taking one from a stage with surplus.
  coverWithinModels(plan);
  coverAcrossModels(plan);

  // 4. Give every stage its second replica where the peers allow: within each model, then across models.
  for (const m of plan.models) replicateWithinModel(plan, m.id);
  replicateAcrossModels(plan);

  // 5. Improve each model's balance by moves and swaps.
  for (const m of plan.models) improve(plan, m.id, minGain);

  return finish(plan, origin, models);
}

/**
 * A stage that lost its last peer takes the peer of its own model whose move leaves the most redundancy (a
 * replica from a stage with three or more before one from a stage with two), then the best capacities, then the
 * newest replica. A stage's last holder never goes.
 */
function coverWithinModels(plan: Plan): void {
  for (const m of plan.models) {
    for (const target of plan.uncovered(m.id)) {
      const caps = plan.caps(m.id);
      let best: { peer: string; keeps: boolean; caps: number[] } | null = null;
      for (const [s, list] of plan.members.get(m.id)!.entries()) {
        if (list.length < 2) continue;
        const keeps = list.length > REDUNDANCY;
        // Newest replica first, so that among equals the longest-standing holder (replica 0 of the last stage
        // reports the losses) stays where it is.
        for (const peer of [...list].reverse()) {
          if (!plan.mayLeave(peer)) continue;
          const v = plan.speed.get(peer)!;
          const next = caps.slice();
          next[s] -= v / m.stageCosts[s];
          next[target] += v / m.stageCosts[target];
          if (!best || (keeps && !best.keeps) || (keeps === best.keeps && compareCapacities(next, best.caps) > 0))
            best = { peer, keeps, caps: next };
        }
      }
      if (best) {
        move(plan, best.peer, m.id, target);
        plan.coverers.add(best.peer);
        plan.moving.add(best.peer);
      }
    }
  }
}

/**
 * A model still missing stages takes surplus replicas from other models, but only when that completes it (a
 * half-covered model cannot train, so the donors would lose capacity for nothing). Peers that asked for their
 * model stay. The donor chosen costs its model the smallest share of its rate; ties go to the faster peer.
 */
function coverAcrossModels(plan: Plan): void {
  const needy = plan.models
    .filter((m) => plan.uncovered(m.id).length > 0)
    .sort((a, b) => plan.uncovered(a.id).length - plan.uncovered(b.id).length);
  for (const m of needy) {
    const others = plan.models.filter((o) => o.id !== m.id);
    const open = plan.uncovered(m.id);
    let spare = 0;
    for (const o of others)
      for (const [s, list] of plan.members.get(o.id)!.entries()) spare += spareOf(plan, o.id, s, list);
    if (spare < open.length) continue;
    for (const target of open) {
      const best = bestDonor(plan, others, 2);
      move(plan, best!.peer, m.id, target);
      plan.coverers.add(best!.peer);
      plan.moving.add(best!.peer);
    }
  }
}

/**
 * How many peers of stage `stage` of `modelId` may go to another model: not those that chose this model, not
 * the stage's last peer, not its last holder.
 */
function spareOf(plan: Plan, modelId: string, stage: number, list: readonly string[]): number {
  const eligible = list.filter((p) => plan.prefer.get(p) !== modelId);
  const holders = eligible.filter((p) => plan.holds(p, modelId, stage)).length;
  const keepHolder = plan.hadHolder(modelId, stage) && holders === plan.holders(modelId, stage) ? 1 : 0;
  return Math.max(0, Math.min(list.length - 1, eligible.length - Math.min(keepHolder, holders)));
}

/**
 * The peer of `donors` that another model should take: from a stage with at least `least` replicas, that did not
 * choose its model and is not its stage's last holder; a donor that keeps its stage at REDUNDANCY replicas first,
 * then the one whose departure costs its model the smallest share of its rate, then the faster.
 */
function bestDonor(plan: Plan, donors: readonly AssignModel[], least: number): { peer: string } | null {
  let best: { peer: string; keeps: boolean; loss: number } | null = null;
  for (const o of donors) {
    const before = plan.rate(o.id);
    const caps = plan.caps(o.id);
    for (const [s, list] of plan.members.get(o.id)!.entries()) {
      if (list.length < least) continue;
      const keeps = list.length > REDUNDANCY;
      for (const peer of list) {
        if (plan.prefer.get(peer) === o.id || !plan.mayLeave(peer)) continue;
        const next = caps.slice();
        next[s] -= plan.speed.get(peer)! / o.stageCosts[s];
        const after = Math.min(...next) * o.stageCosts.reduce((a, b) => a + b, 0);
        const loss = before > 0 ? 1 - after / before : 0;
        const better =
          !best ||
          (keeps && !best.keeps) ||
          (keeps === best.keeps &&
            (loss < best.loss - EPS ||
              (Math.abs(loss - best.loss) <= EPS && plan.speed.get(peer)! > plan.speed.get(best.peer)!)));
        if (better) best = { peer, keeps, loss };
      }
    }
  }
  return best;
}

/**
 * Gives the model's stages their second replica while another stage of it has more than REDUNDANCY: each move
 * raises the model's redundancy by one, so at the end it is min(peers, REDUNDANCY × stages). The peer moved is
 * one placed in this call if any can go (it costs no extra transfer), else an anchored one (never a stage's last
 * holder), choosing the move that leaves the best capacities; the target is where that peer helps most.
 */
function replicateWithinModel(plan: Plan, modelId: string): void {
  const costs = plan.modelById.get(modelId)!.stageCosts;
  const free = (p: string) => !plan.anchored.has(p) || plan.moving.has(p);
  for (;;) {
    const counts = plan.counts(modelId);
    const thin = counts.flatMap((c, s) => (c < REDUNDANCY ? [s] : []));
    if (thin.length === 0) return;
    const caps = plan.caps(modelId);
    let best: { peer: string; to: number; free: boolean; caps: number[] } | null = null;
    for (const [s, list] of plan.members.get(modelId)!.entries()) {
      if (list.length <= REDUNDANCY) continue;
      for (const peer of list) {
        if (!plan.mayLeave(peer)) continue;
        const v = plan.speed.get(peer)!;
        for (const t of thin) {
          const next = caps.slice();
          next[s] -= v / costs[s];
          next[t] += v / costs[t];
          const f = free(peer);
          if (!best || (f && !best.free) || (f === best.free && compareCapacities(next, best.caps) > 0))
            best = { peer, to: t, free: f, caps: next };
        }
      }
    }
    if (!best) return;
    if (!free(best.peer)) plan.replicators.add(best.peer);
    move(plan, best.peer, modelId, best.to);
    plan.moving.add(best.peer);
  }
}

/**
 * A model with a stage below REDUNDANCY replicas (and none uncovered) takes a peer from another model's stage
 * that has more than REDUNDANCY, while there is one: redundancy comes before the donor's throughput. Peers that
 * chose their model stay.
 */
function replicateAcrossModels(plan: Plan): void {
  for (let changed = true; changed; ) {
    changed = false;
    for (const m of plan.models) {
      if (plan.uncovered(m.id).length > 0) continue;
      const thin = plan.underReplicated(m.id);
      if (thin.length === 0) continue;
      const donor = bestDonor(
        plan,
        plan.models.filter((o) => o.id !== m.id),
        REDUNDANCY + 1,
      );
      if (!donor) continue;
      if (plan.anchored.has(donor.peer) && !plan.moving.has(donor.peer)) plan.replicators.add(donor.peer);
      move(plan, donor.peer, m.id, plan.slowest(m.id, thin));
      plan.moving.add(donor.peer);
      changed = true;
    }
  }
}

/**
 * Balances one model. First the peers placed in this call (free to go anywhere) are arranged around the peers
 * that keep their place. Then the search is rerun with every peer movable; its answer is taken only if it
 * raises the bottleneck by minGain, and then each moved peer that can go back without lowering the new
 * bottleneck (or the redundancy) goes back, so the gain costs as few weight transfers as it can. Every step keeps
 * the redundancy reached and each stage's last holder.
 */
function improve(plan: Plan, modelId: string, minGain: number): void {
  const movable = (p: string) => !plan.anchored.has(p) || plan.moving.has(p);
  localSearch(plan, modelId, movable);
  const kept = snapshot(plan, modelId);
  const low = Math.min(...plan.caps(modelId));
  if (!(low > 0)) return;
  localSearch(plan, modelId, () => true);
  const high = Math.min(...plan.caps(modelId));
  if (high < (1 + minGain) * low * (1 - EPS)) {
    restore(plan, modelId, kept);
    return;
  }
  const redundancy = plan.redundancy(modelId);
  const before = new Map(kept.flatMap((list, stage) => list.map((p) => [p, stage] as const)));
  for (let changed = true; changed; ) {
    changed = false;
    for (const [peer, stage] of before) {
      const now = plan.where.get(peer)!.stage;
      if (now === stage || movable(peer) || plan.members.get(modelId)![now].length < 2 || !plan.mayLeave(peer))
        continue;
      move(plan, peer, modelId, stage);
      if (Math.min(...plan.caps(modelId)) >= high * (1 - EPS) && plan.redundancy(modelId) >= redundancy) changed = true;
      else move(plan, peer, modelId, now);
    }
  }
  for (const p of plan.members.get(modelId)!.flat()) if (before.get(p) !== plan.where.get(p)!.stage) plan.moving.add(p);
  localSearch(plan, modelId, movable);
}

function snapshot(plan: Plan, modelId: string): string[][] {
  return plan.members.get(modelId)!.map((list) => [...list]);
}

function restore(plan: Plan, modelId: string, snap: string[][]): void {
  plan.members.set(
    modelId,
    snap.map((list) => [...list]),
  );
  snap.forEach((list, stage) => list.forEach((p) => plan.where.set(p, { modelId, stage })));
}

/** One peer's part of a candidate operation: it goes from stage `from` to stage `to`. */
type Step = readonly [peer: string, from: number, to: number];

/**
 * Local search: the best single move (a replica to another stage), swap (two peers of different stages) or
 * one-for-two trade among `movable` peers is applied while one improves (redundancy, ascending-sorted
 * capacities) lexicographically, never leaving a stage without a peer or a held stage without a holder. Each
 * applied operation strictly improves that pair, so the search ends.
 */
function localSearch(plan: Plan, modelId: string, movable: (peer: string) => boolean): void {
  const stages = plan.members.get(modelId)!;
  const costs = plan.modelById.get(modelId)!.stageCosts;
  const peerCount = stages.reduce((t, l) => t + l.length, 0);
  for (let iter = 0; iter < 4 * peerCount + 8; iter++) {
    const caps = plan.caps(modelId);
    if (!(Math.min(...caps) > 0)) return; // uncovered stages stay so; nothing to balance until they are covered
    const counts = stages.map((l) => l.length);
    const holders = stages.map((_, s) => plan.holders(modelId, s));
    const score = redundancyScore(counts);
    /** The redundancy after `steps`, or null when they empty a stage or take a held stage's last holder. */
    const redundancyAfter = (steps: readonly Step[]): number | null => {
      const c = counts.slice();
      const h = holders.slice();
      for (const [p, from, to] of steps) {
        c[from]--;
        c[to]++;
        if (plan.holds(p, modelId, from)) h[from]--;
        if (plan.holds(p, modelId, to)) h[to]++;
      }
      for (const [, from] of steps) if (c[from] < 1 || (plan.hadHolder(modelId, from) && h[from] < 1)) return null;
      return redundancyScore(c);
    };
    let best: { score: number; caps: number[]; apply: () => void } | null = null;
    const consider = (next: number[], steps: readonly Step[]) => {
      const r = redundancyAfter(steps);
      if (r === null || r < score || (r === score && compareCapacities(next, caps) <= 0)) return;
      if (!best || r > best.score || (r === best.score && compareCapacities(next, best.caps) > 0))
        best = { score: r, caps: next, apply: () => steps.forEach(([p, , to]) => move(plan, p, modelId, to)) };
    };
    for (let s = 0; s < stages.length; s++) {
      for (const p of stages[s]) {
        if (!movable(p)) continue;
        const v = plan.speed.get(p)!;
        // Move p from s to t.
        for (let t = 0; t < stages.length; t++) {
          if (t === s) continue;
          const next = caps.slice();
          next[s] -= v / costs[s];
          next[t] += v / costs[t];
          consider(next, [[p, s, t]]);
        }
        // Swap p (in s) with q (in a later stage t).
        for (let t = s + 1; t < stages.length; t++) {
          for (const q of stages[t]) {
            const w = plan.speed.get(q)!;
            if (w === v || !movable(q)) continue;
            const next = caps.slice();
            next[s] += (w - v) / costs[s];
            next[t] += (v - w) / costs[t];
            consider(next, [
              [p, s, t],
              [q, t, s],
            ]);
          }
        }
        // Trade p (in s) for two peers q, r of another stage t: what single moves and swaps cannot reach when
        // one fast peer should face two slow ones. Cubic, so only for small swarms.
        if (peerCount > TRADE_LIMIT) continue;
        for (let t = 0; t < stages.length; t++) {
          if (t === s) continue;
          const list = stages[t].filter(movable);
          for (let i = 0; i < list.length; i++) {
            for (let j = i + 1; j < list.length; j++) {
              const [q, r] = [list[i], list[j]];
              const w = plan.speed.get(q)! + plan.speed.get(r)!;
              const next = caps.slice();
              next[s] += (w - v) / costs[s];
              next[t] += (v - w) / costs[t];
              consider(next, [
                [p, s, t],
                [q, t, s],
                [r, t, s],
              ]);
            }
          }
        }
      }
    }
    if (!best) return;
    (best as { apply: () => void }).apply();
  }
}

function move(plan: Plan, peer: string, modelId: string, stage: number): void {
  plan.unplace(peer);
  plan.place(peer, { modelId, stage });
}

/** Numbers replicas (kept for peers that stayed on their stage), sorts, and lists the moves against `origin`. */
function finish(plan: Plan, origin: Map<string, Placement>, models: readonly AssignModel[]): AssignResult {
  const assignments: Placement[] = [];
  for (const m of plan.models) {
    for (const [stage, list] of plan.members.get(m.id)!.entries()) {
      const taken = new Set<number>();
      const replicaOf = new Map<string, number>();
      const stayed = (p: string) => {
        const o = origin.get(p);
        return o && o.modelId === m.id && o.stage === stage && Number.isInteger(o.replica) && o.replica >= 0
          ? o.replica
          : null;
      };
      for (const p of [...list].sort()) {
        const r = stayed(p);
        if (r !== null && !taken.has(r)) {
          taken.add(r);
          replicaOf.set(p, r);
        }
      }
      let nextFree = 0;
      for (const p of [...list].sort()) {
        if (replicaOf.has(p)) continue;
        while (taken.has(nextFree)) nextFree++;
        taken.add(nextFree);
        replicaOf.set(p, nextFree);
      }
      for (const [peerId, replica] of replicaOf) assignments.push({ modelId: m.id, stage, replica, peerId });
    }
  }
  const order = new Map(models.map((m, i) => [m.id, i]));
  assignments.sort(
    (a, b) => order.get(a.modelId)! - order.get(b.modelId)! || a.stage - b.stage || a.replica - b.replica,
  );

  const final = new Map(assignments.map((a) => [a.peerId, a]));
  const moves: Move[] = [];
  for (const [peerId, from] of origin) {
    const to = final.get(peerId) ?? null;
    if (!to) moves.push({ peerId, from, to: null, reason: 'leave' });
    else if (to.modelId !== from.modelId || to.stage !== from.stage)
      moves.push({
        peerId,
        from,
        to,
        reason: plan.coverers.has(peerId) ? 'cover' : plan.replicators.has(peerId) ? 'replicate' : 'rebalance',
      });
  }
  for (const a of assignments)
    if (!origin.has(a.peerId)) moves.push({ peerId: a.peerId, from: null, to: a, reason: 'join' });
  return { assignments, moves };
}
