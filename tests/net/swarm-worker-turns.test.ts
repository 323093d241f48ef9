/**
 * A SwarmWorker's device settings: the inference priority and the duty cycle reach its GpuTurns (which the
 * inference server shares), bad values are refused with a reason and change nothing, and pause() between
 * steps stops the device's turns until resume(). The worker is built but never run: nothing here needs a
 * coordinator or a GPU, so the node, client and GPU are bare stand-ins (only the peer id is read).
 */
import type { Libp2p } from 'libp2p';
import { describe, expect, it } from 'vitest';
import { ArgumentError, type Gpu } from '../../src/gpu/index.ts';
import type { CoordinatorClient } from '../../src/net/coordinator-client.ts';
import { SwarmWorker, type SwarmWorkerOptions } from '../../src/net/swarm-worker.ts';

function worker(extra: Partial<SwarmWorkerOptions> = {}): SwarmWorker {
  return new SwarmWorker({
    gpu: {} as Gpu,
    node: { peerId: { toString: () => '12D3KooWstandin' } } as unknown as Libp2p,
    client: {} as CoordinatorClient,
    relayAddr: '',
    kind: 'node',
    tokensPerSecond: 1,
    loadCorpus: () => Promise.reject(new Error('not used')),
    ...extra,
  });
}

describe('SwarmWorker device settings', () => {
  it('passes the inference priority and duty cycle to its turns; defaults 0.5 and 1', () => {
    const plain = worker();
    expect(plain.turns.inferenceShare).toBe(0.5);
    expect(plain.turns.dutyCycle).toBe(1);
    const w = worker({ inferencePriority: 0.9, dutyCycle: 0.25 });
    expect(w.turns.inferenceShare).toBe(0.9);
    expect(w.turns.dutyCycle).toBe(0.25);
    w.setDutyCycle(0.5);
    w.setInferencePriority(0);
    expect(w.turns.dutyCycle).toBe(0.5);
    expect(w.turns.inferenceShare).toBe(0);
  });

  it('refuses out-of-range settings and keeps the old ones', () => {
    expect(() => worker({ dutyCycle: 0 })).toThrow(ArgumentError);
    expect(() => worker({ inferencePriority: -0.1 })).toThrow(/inference share must be a number in \[0, 1\]/);
    const w = worker({ dutyCycle: 0.5 });
    expect(() => w.setDutyCycle(1.5)).toThrow(/duty cycle/);
    expect(() => w.setInferencePriority(Number.NaN)).toThrow(ArgumentError);
    expect(w.turns.dutyCycle).toBe(0.5);
    expect(w.turns.inferenceShare).toBe(0.5);
  });

  it('pause() between steps stops the device (inference turns wait) until resume()', async () => {
    const w = worker();
    w.pause();
    expect(w.turns.paused).toBe(true);
    let served = false;
    const request = w.turns.run('infer', () => void (served = true));
    await new Promise((r) => setTimeout(r, 30));
    expect(served).toBe(false);
    w.resume();
    await request;
    expect(served).toBe(true);
    expect(w.turns.paused).toBe(false);
  });
});
