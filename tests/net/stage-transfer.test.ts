/**
 * `/tessera/stage/1.0.0` and `/tessera/sync/2.0.0` between real libp2p peers (relay + direct WebRTC on
 * 127.0.0.1), with real stages on the Dawn device: a holder serves its stage's checkpoint to the peer assigned
 * that stage and to nobody else; the asker rebuilds the stage bit for bit; every kind of bad reply (tampered,
 * wrong stage, oversized, mis-hashed, cut short) is refused before anything reaches the GPU.
 */
import type { Libp2p, Stream } from '@libp2p/interface';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../../src/gpu/index.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { saveStage } from '../../src/model/checkpoint.ts';
import { sha256Hex } from '../../src/model/safetensors.ts';
import { Stage } from '../../src/model/stage.ts';
import { splitStages } from '../../src/model/stages.ts';
import { HeldStage } from '../../src/net/held-stage.ts';
import { MAX_CHUNK_BYTES } from '../../src/net/net-transport.ts';
import { createPeer, createRelay, dialWebRTC, waitForRelayAddress } from '../../src/net/node.ts';
import {
  fetchStage,
  STAGE_PROTOCOL,
  StageServer,
  StageTransferError,
  type StageSource,
} from '../../src/net/stage-transfer.ts';
import { StreamReader, writeBytes, writeJson } from '../../src/net/stream-io.ts';
import { queryStatus, sendLosses, SyncServer, type SyncStatus } from '../../src/net/swarm-sync.ts';
import { Rng } from '../../src/ops/rng.ts';
import { testGpu } from '../gpu-fixture.ts';

const cfg: ModelConfig = { vocab: 256, dModel: 32, heads: 2, layers: 2, context: 16, seed: 3 };
const specs = splitStages(cfg, 2);
const adam = { lr: 3e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
const B = 2;
const T = 16;

/** One optimizer step of the last stage on a fixed input (what a pipeline step does to its weights and moments). */
async function trainLast(stage: Stage, step: number): Promise<void> {
  const rng = new Rng(900 + step);
  const x = Float32Array.from({ length: B * T * cfg.dModel }, () => rng.normal());
  const targets = Int32Array.from({ length: B * T }, () => rng.int(cfg.vocab));
  const r = stage.forward({ id: step, batch: B, seq: T, input: stage.gpu.upload(x, [B * T, cfg.dModel]), targets });
  stage.gpu.release(r.loss, r.logits);
  stage.backward(step);
  await stage.applyStep(adam);
}

const problem = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (e) {
    if (e instanceof StageTransferError) return e.problem;
    throw e;
  }
  return 'none';
};

describe('stage transfer over libp2p', () => {
  const nodes: Libp2p[] = [];
  let gpu: Gpu;
  let holder: Libp2p, asker: Libp2p, outsider: Libp2p, rogue: Libp2p;
  let server: StageServer;
  let held: HeldStage;
  /** What the rogue holder does wrong next. */
  let mode: 'tampered' | 'wrong-stage' | 'oversize' | 'bad-hash' | 'short' = 'tampered';
  let stage0: Stage;

  beforeAll(async () => {
    gpu = await testGpu();
    const relay = await createRelay();
    nodes.push(relay);
    const relayAddr = relay.getMultiaddrs()[0].toString();
    [holder, asker, outsider, rogue] = await Promise.all([0, 1, 2, 3].map(() => createPeer({ relayAddr })));
    nodes.push(holder, asker, outsider, rogue);
    await Promise.all([holder, asker, outsider, rogue].map((n) => waitForRelayAddress(n)));
    await dialWebRTC(asker, relayAddr, holder.peerId);
    await dialWebRTC(outsider, relayAddr, holder.peerId);
    await dialWebRTC(asker, relayAddr, rogue.peerId);

    const stage = Stage.create(gpu, cfg, specs[1]);
    await trainLast(stage, 0);
    await trainLast(stage, 1);
    held = new HeldStage(stage, 2);
    stage0 = Stage.create(gpu, cfg, specs[0]);
    // The holder's view of the assignment: the asker holds stage 1 of "tm", the outsider stage 0.
    const assigned = new Map([
      [asker.peerId.toString(), 1],
      [outsider.peerId.toString(), 0],
    ]);
    const source: StageSource = {
      assignedStage: (model, peer) => (model === 'tm' ? assigned.get(peer) : undefined),
      checkpoint: async (model, s, step) => {
        if (model !== 'tm' || s !== held.index) return { code: 'not-held', error: `no stage ${s} here` };
        if (step !== held.step) return { code: 'not-ready', error: `at step ${held.step}` };
        return held.checkpoint();
      },
    };
    server = new StageServer({ node: holder, source, log: { info: () => {}, warn: () => {} } });
    await server.start();

    const good = await saveStage(stage);
    const wrong = await saveStage(stage0);
    await rogue.handle(STAGE_PROTOCOL, async (stream: Stream) => {
      const req = (await new StreamReader(stream).readJson(1024, 'request')) as {
        model: string;
        stage: number;
        step: number;
      };
      let bytes = good.slice();
      let sha = '';
      let announced = bytes.length;
      // a bit of v.head.w; the file's own content hash no longer matches
      if (mode === 'tampered') bytes[bytes.length - 5] ^= 0x40;
      if (mode === 'wrong-stage') bytes = wrong.slice();
      if (mode === 'oversize') announced = 1 << 30;
      sha = mode === 'bad-hash' ? '0'.repeat(64) : await sha256Hex(bytes);
      if (mode === 'short') bytes = bytes.subarray(0, 1000);
      if (mode !== 'short' && mode !== 'oversize') announced = bytes.length;
      await writeJson(stream, { ok: true, ...req, bytes: announced, sha256: sha });
      await writeBytes(stream, mode === 'oversize' ? bytes.subarray(0, 10) : bytes);
      await stream.close();
    });
  }, 60_000);

  afterAll(async () => {
    await server?.stop();
    held?.destroy();
    stage0?.destroy();
    await Promise.all(nodes.map((n) => n.stop()));
  });

  it(
    'hands the assigned peer its stage, chunked under 64 KiB, and the rebuilt stage re-saves byte for ' + 'byte',
    async () => {
      const got = await fetchStage(asker, holder.peerId, { model: 'tm', stage: 1, step: 2 }, { cfg, spec: specs[1] });
      const original = await held.checkpoint();
      expect(got.bytes.length).toBe(original.length);
      expect(got.bytes.length).toBeGreaterThan(3 * MAX_CHUNK_BYTES);
      expect(server.stats.largestChunk).toBeLessThanOrEqual(MAX_CHUNK_BYTES);
      expect(server.stats.served).toBe(1);
      expect(got.sha256).toBe(await sha256Hex(original));
      expect(got.checkpoint.step).toBe(2); // optimizer steps: the moments' bias correction goes on where it was

      const rebuilt = Stage.create(gpu, cfg, got.checkpoint.spec, got.checkpoint.params);
      for (const [name, slot] of rebuilt.slots) {
        gpu.write(slot.m, got.checkpoint.m.get(name)!);
        gpu.write(slot.v, got.checkpoint.v.get(name)!);
      }
      rebuilt.step = got.checkpoint.step;
      expect(await sha256Hex(await saveStage(rebuilt))).toBe(got.sha256);
      rebuilt.destroy();
    },
  );

  it('refuses a stage the asker is not assigned, and a step the holder does not stand at', async () => {
    expect(
      await problem(fetchStage(outsider, holder.peerId, { model: 'tm', stage: 1, step: 2 }, { cfg, spec: specs[1] })),
    ).toBe('not-assigned');
    expect(
      await problem(fetchStage(asker, holder.peerId, { model: 'other', stage: 1, step: 2 }, { cfg, spec: specs[1] })),
    ).toBe('not-assigned');
    expect(
      await problem(fetchStage(asker, holder.peerId, { model: 'tm', stage: 1, step: 3 }, { cfg, spec: specs[1] })),
    ).toBe('not-ready');
    expect(server.stats.refused).toBe(3);
    // Asking for a stage other than the one expected is refused before anything is sent.
    expect(
      await problem(fetchStage(asker, holder.peerId, { model: 'tm', stage: 0, step: 2 }, { cfg, spec: specs[1] })),
    ).toBe('bad-request');
  });

  it('refuses tampered, foreign, oversized, mis-hashed and truncated checkpoints', async () => {
    const ask = () =>
      problem(
        fetchStage(
          asker,
          rogue.peerId,
          { model: 'tm', stage: 1, step: 2 },
          { cfg, spec: specs[1] },
          { timeoutMs: 10_000 },
        ),
      );
    const seen: Record<string, string> = {};
    for (const m of ['tampered', 'wrong-stage', 'oversize', 'bad-hash', 'short'] as const) {
      mode = m;
      seen[m] = await ask();
    }
    expect(seen).toEqual({
      tampered: 'checkpoint',
      'wrong-stage': 'checkpoint',
      oversize: 'size',
      'bad-hash': 'hash',
      short: 'protocol',
    });
  });

  it('undoes the last applied update exactly, even after the next step began and failed', async () => {
    const hash = async () => sha256Hex(await held.checkpoint());
    const at2 = await hash();
    held.begin();
    await trainLast(held.stage, 2);
    held.commit(); // step 2's update applied
    expect(held.step).toBe(3);
    expect(held.hasBackup).toBe(true);
    const at3 = await hash();
    expect(at3).not.toBe(at2);
    // Step 3 begins (its start copy must not overwrite the backup of step 2) and fails before its update.
    held.begin();
    held.abandon();
    expect(held.reaches(2)).toBe(true);
    held.rollback();
    expect(held.step).toBe(2);
    expect(held.hasBackup).toBe(false);
    expect(held.stage.step).toBe(2);
    expect(await hash()).toBe(at2);
    expect(() => held.rollback()).toThrow(/no copy/);
    // Recomputing step 2 gives the same update: same weights, same batch, deterministic kernels.
    held.begin();
    await trainLast(held.stage, 2);
    held.commit();
    expect(await hash()).toBe(at3);
  });
});

describe('sync protocol', () => {
  const nodes: Libp2p[] = [];
  let a: Libp2p, b: Libp2p;
  let server: SyncServer;
  const received: Array<[string, number]> = [];

  beforeAll(async () => {
    const relay = await createRelay();
    nodes.push(relay);
    const relayAddr = relay.getMultiaddrs()[0].toString();
    [a, b] = await Promise.all([createPeer({ relayAddr }), createPeer({ relayAddr })]);
    nodes.push(a, b);
    await Promise.all([waitForRelayAddress(a), waitForRelayAddress(b)]);
    await dialWebRTC(a, relayAddr, b.peerId);
    const status: SyncStatus = {
      layout: 'L',
      phase: 'ready',
      round: 3,
      held: [{ stage: 1, step: 7, backup: true }],
      reported: 7,
      resume: { step: 7, round: 3, fresh: false },
    };
    server = new SyncServer({
      node: b,
      log: () => {},
      handler: {
        status: () => status,
        losses: (from, req) => {
          if (req.round !== 3) throw new Error(`round ${req.round} is not this one`);
          received.push([from, req.step]);
        },
      },
    });
    await server.start();
  }, 60_000);

  afterAll(async () => {
    await server?.stop();
    await Promise.all(nodes.map((n) => n.stop()));
  });

  it('answers a status and takes losses; refuses what does not fit', async () => {
    const st = await queryStatus(a, b.peerId, { type: 'status', model: 'tm', layout: 'L', phase: 'paused', round: 2 });
    expect(st).toEqual({
      layout: 'L',
      phase: 'ready',
      round: 3,
      held: [{ stage: 1, step: 7, backup: true }],
      reported: 7,
      resume: { step: 7, round: 3, fresh: false },
    });
    await sendLosses(a, b.peerId, { type: 'losses', model: 'tm#3', round: 3, step: 7, losses: [[1, 2.5]] });
    expect(received).toEqual([[a.peerId.toString(), 7]]);
    await expect(
      sendLosses(a, b.peerId, { type: 'losses', model: 'tm#2', round: 2, step: 7, losses: [[1, 2.5]] }),
    ).rejects.toThrow(/round 2 is not this one/);
    await expect(
      sendLosses(a, b.peerId, { type: 'losses', model: 'tm#3', round: 3, step: 7, losses: [[1, NaN]] }),
    ).rejects.toThrow(/finite number/);
    expect(server.refused).toBe(2);
  });
});
