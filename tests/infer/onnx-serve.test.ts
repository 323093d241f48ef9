/**
 * InferenceServer's runtime choice between real libp2p peers (relay + direct WebRTC on 127.0.0.1): one holder
 * serves stage 0 on onnxruntime-web ('onnx'), the other measures both runtimes and serves with the faster
 * ('auto'); generation through them over /tessera/infer/1.0.0 equals the same weights' WGSL generation in
 * this process, the wire protocol unchanged; bad activations are refused and the holder keeps serving.
 */
import type { Libp2p } from '@libp2p/interface';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { greedyRequest } from '../../src/infer/backend.ts';
import { greedy } from '../../src/infer/sample.ts';
import { INFER_PROTOCOL, InferenceServer, type InferReply } from '../../src/infer/serve.ts';
import { WgslRuntime } from '../../src/infer/stage-runtime.ts';
import { SwarmInference } from '../../src/infer/swarm-backend.ts';
import { createPeer, createRelay, dialWebRTC, waitForRelayAddress } from '../../src/net/node.ts';
import { openStream, StreamReader, withTimeout, writeBytes, writeJson } from '../../src/net/stream-io.ts';
import type { Stage } from '../../src/model/stage.ts';
import { testGpu } from '../gpu-fixture.ts';
import { buildStages, CFG } from './fixtures.ts';

const MODEL = 'onnx-serve';
const PROMPT = [5, 17, 3, 44, 9];
const N = 8;

describe('InferenceServer chooses its runtime', () => {
  const nodes: Libp2p[] = [];
  const servers: InferenceServer[] = [];
  const logs: string[] = [];
  let stages: Stage[];
  let requester: Libp2p;
  let holders: Libp2p[];

  beforeAll(async () => {
    const gpu = await testGpu();
    stages = buildStages(gpu, 2);
    const relay = await createRelay();
    nodes.push(relay);
    const relayAddr = relay.getMultiaddrs()[0].toString();
    const peers = await Promise.all([0, 1, 2].map(() => createPeer({ relayAddr })));
    nodes.push(...peers);
    await Promise.all(peers.map((n) => waitForRelayAddress(n)));
    [requester, ...holders] = peers;
    for (const h of holders) await dialWebRTC(requester, relayAddr, h.peerId);
    (['onnx', 'auto'] as const).forEach((runtime, i) => {
      const server = new InferenceServer({
        node: holders[i],
        held: () => ({ modelId: MODEL, stage: stages[i] }),
        runtime,
        log: (l) => logs.push(`${i}: ${l}`),
      });
      servers.push(server);
    });
    await Promise.all(servers.map((s) => s.start()));
  });

  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    await Promise.all(nodes.map((n) => n.stop()));
    for (const s of stages ?? []) s.destroy();
  });

  it('generates through an ONNX holder and an auto-chosen one the tokens WGSL gives in one process', async () => {
    const backend = new SwarmInference({
      node: requester,
      auditFraction: 0,
      holders: (id) =>
        id === MODEL ? { dModel: CFG.dModel, stages: holders.map((h) => [h.peerId.toString()]) } : null,
    });
    const seen: number[] = [];
    const out = await backend.generate(greedyRequest(MODEL, PROMPT, N), (t) => {
      seen.push(t);
    });

    const local = stages.map((s) => new WgslRuntime(s, { maxSessions: 1 }));
    const want: number[] = [];
    let input: Int32Array | Float32Array = Int32Array.from(PROMPT);
    for (let i = 0; i < N; i++) {
      for (const r of local) {
        const step = await r.step('ref', input, i === 0);
        input = (step.output ?? step.logits)!;
      }
      want.push(greedy(input as Float32Array));
      input = Int32Array.of(want[i]);
    }
    for (const r of local) r.destroy();
    expect(out.tokens).toEqual(want);
    expect(seen).toEqual(want);

    // The 'auto' holder served that generation with WGSL at once and measured both runtimes meanwhile; new
    // sessions go to the one it chose, and generate the same tokens.
    for (let i = 0; i < 300 && !servers[1].stats.runtime; i++) await new Promise((r) => setTimeout(r, 100));
    const again = await backend.generate(greedyRequest(MODEL, PROMPT, N), () => {});
    expect(again.tokens).toEqual(want);

    // What each holder serves with, and why.
    const [onnx, auto] = servers.map((s) => s.stats.runtime!);
    expect(onnx).toMatchObject({ stage: 0, name: 'onnx-wasm', mode: 'onnx', reason: 'set to onnx' });
    expect(auto).toMatchObject({ stage: 1, mode: 'auto' });
    expect(auto.measured!.map((m) => m.name)).toEqual(['wgsl', 'onnx-wasm']);
    for (const m of auto.measured!) expect(Number.isFinite(m.totalMs) && m.tokensPerSecond > 0).toBe(true);
    expect(auto.name).toBe(auto.measured!.reduce((a, b) => (b.totalMs < a.totalMs ? b : a)).name);
    expect(
      logs.some((l) => l.startsWith(`1: inference runtime for stage 1/2: ${auto.name} (measured: wgsl TTFT`)),
    ).toBe(true);
    // one step per token (ending the session is not counted)
    expect(servers.map((s) => s.stats.served)).toEqual([2 * N, 2 * N]);
  });

  it('refuses NaN activations with a reason, and keeps serving', async () => {
    const ask = async (rows: Float32Array, session: string): Promise<InferReply> => {
      const signal = withTimeout(20_000);
      const stream = await openStream(requester, holders[1].peerId, INFER_PROTOCOL, signal);
      await writeJson(stream, { model: MODEL, stage: 1, session, rows: rows.length / CFG.dModel }, signal);
      await writeBytes(stream, new Uint8Array(rows.buffer), signal);
      const reader = new StreamReader(stream);
      const reply = (await reader.readJson(64 * 1024, 'reply')) as InferReply;
      reader.dispose();
      await stream.close();
      return reply;
    };
    const bad = new Float32Array(2 * CFG.dModel);
    bad[3] = NaN;
    const refused = servers[1].stats.refused;
    expect(await ask(bad, 'nan')).toEqual({ ok: false, error: 'stage 1: activation 3 is NaN: refused' });
    expect(servers[1].stats.refused).toBe(refused + 1);
    const ok = await ask(new Float32Array(2 * CFG.dModel).fill(0.5), 'fine');
    expect(ok).toMatchObject({ ok: true, length: 2 });
    expect(Number.isInteger((ok as { token: number }).token)).toBe(true);
  });
  it('counts a requester that goes away before its request is whole as a broken stream, not a refusal', async () => {
    const refused = servers[1].stats.refused;
    const before = logs.length;
    const signal = withTimeout(20_000);
    const stream = await openStream(requester, holders[1].peerId, INFER_PROTOCOL, signal);
    await writeBytes(stream, new Uint8Array([0, 0]), signal); // half of the request's length prefix
    stream.abort(new Error('requester went away'));
    let line = '';
    for (let i = 0; i < 100 && !line; i++) {
      line = logs.slice(before).find((l) => l.startsWith('1: inference stream from')) ?? '';
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(line).toMatch(/inference stream from \w+ failed: .*stream (failed|ended) after/);
    expect(servers[1].stats.refused).toBe(refused);
    expect(logs.slice(before).some((l) => l.includes('refused'))).toBe(false);
  });
});
