/**
 * Who sits where in one pipeline: (stage, replica) ↔ peer id, both ways, kept structured. Workers number
 * replicas densely in replica order (the coordinator's replica numbers may have gaps), so every worker of the
 * pipeline derives the same seats from the same assignment.
 */
import type { StageSpec } from '../../model/stages.ts';
import { stageSpecs } from '../../train/run-derived.ts';
import { workerId } from '../../train/stage-runner.ts';
import type { Assignment } from '../coordinator-client.ts';

export interface Seat {
  stage: number;
  replica: number;
}

export class Roster {
  /** Replica count per stage. */
  readonly replicas: number[];
  /** [stage][replica] → peer id. */
  private readonly seated: string[][];
  private readonly seats = new Map<string, Seat>();
  /** The tensor transport's worker ids (workerId(stage, replica)) → peer id. */
  private readonly byWorkerId = new Map<string, string>();

  constructor(a: Pick<Assignment, 'pipeline'>) {
    const stages = [...a.pipeline].sort((x, y) => x.stage - y.stage);
    this.seated = [];
    this.replicas = [];
    for (const st of stages) {
      const peers = [...st.peers].sort((x, y) => x.replica - y.replica).map((p) => p.peerId);
      this.seated[st.stage] = peers;
      this.replicas.push(peers.length);
      peers.forEach((peer, replica) => {
        this.seats.set(peer, { stage: st.stage, replica });
        this.byWorkerId.set(workerId(st.stage, replica), peer);
      });
    }
  }

  peerAt(stage: number, replica: number): string | undefined {
    return this.seated[stage]?.[replica];
  }

  seatOf(peer: string): Seat | undefined {
    return this.seats.get(peer);
  }

  /** The peer behind a tensor transport worker id. */
  peerOfWorker(id: string): string | undefined {
    return this.byWorkerId.get(id);
  }

  get peers(): string[] {
    return [...this.seats.keys()];
  }
}

/** This peer's stage of the model, from the spec's layout (the same ranges every worker derives). */
export function specOf(a: Pick<Assignment, 'spec' | 'stage'>): StageSpec {
  return stageSpecs(a.spec)[a.stage];
}
