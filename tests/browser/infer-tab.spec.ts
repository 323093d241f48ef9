import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from '@playwright/test';
import {
  DESKTOP,
  REAL_HOST_CANDIDATES,
  json,
  jsonLine,
  spawnLogged,
  startSwarmAndWorker,
  stopAll,
  storeTabKey,
  volunteerSteps,
} from './helpers.ts';

/**
 * A tab that holds a stage serves `/tessera/infer/1.0.0`: a coordinator (tests/browser/swarm-server.ts) and one
 * `npm run worker` process hold the two stages of a model with the tab; the tab, having measured our WGSL
 * kernels against onnxruntime-web on its WebGPU EP (SwiftShader here), serves its stage with the one it chose.
 * A third peer — a Node process running SwarmInference, the coordinator's own inference client — generates
 * greedy tokens through the tab and the worker over direct WebRTC.
 */

// Real host candidates, so Node peers reach the tab over the machine's interface.
test.use(REAL_HOST_CANDIDATES);
test.setTimeout(240_000);

const N = 6;

/** The requester, run by Node with our loader: dials both holders over WebRTC and generates through them. */
const REQUESTER = `
import { createPeer, dialWebRTC, waitForRelayAddress } from './src/net/node.ts';
import { SwarmInference } from './src/infer/swarm-backend.ts';
const job = JSON.parse(process.env.INFER_JOB);
const node = await createPeer({ relayAddr: job.relay });
await waitForRelayAddress(node);
for (const h of job.stages.flat()) await dialWebRTC(node, job.relay, h, 30000);
const backend = new SwarmInference({
  node, auditFraction: 0, timeoutMs: 120000, log: (l) => console.log(l),
  holders: () => ({ dModel: job.dModel, stages: job.stages }),
});
const t0 = performance.now();
const out = await backend.generate({
  modelId: job.model, prompt: Int32Array.from(job.prompt), maxTokens: job.tokens, sampling: { temperature: 0 },
  signal: AbortSignal.timeout(180000),
}, () => {});
console.log('RESULT ' + JSON.stringify({ ...out, ms: performance.now() - t0, hops: backend.stats.hops }));
await node.stop();
process.exit(0);
`;

test('a tab holding a stage measures both runtimes and serves /tessera/infer/1.0.0 to a Node requester', async ({
  page,
}) => {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-infer-tab-'));
  const logs: string[] = [];
  const children: ChildProcess[] = [];
  try {
    const { fx, keys } = await startSwarmAndWorker(dir, logs, children);

    await page.setViewportSize(DESKTOP);
    await page.goto(`${fx.app}/`);
    await storeTabKey(page, keys.tab);
    await page.getByRole('link', { name: 'Volunteer' }).click();
    await page.getByRole('button', { name: 'Join the swarm' }).click();
    await expect(page.getByTestId('vol-model')).toHaveText(fx.modelId, { timeout: 30_000 });

    const activity = page.getByTestId('vol-log');
    // Serve once the pipeline is settled: the tab has trained a step in its epoch (between epochs it holds nothing).
    await volunteerSteps(page, 1, 120_000);
    expect((await page.evaluate(() => window.__tesseraVolunteer))?.error).toBeUndefined();

    // Who holds what, from the coordinator.
    const { peers } = await json<{
      peers: Array<{ peerId: string; status: string; assignments: Array<{ modelId: string; stage: number }> }>;
    }>(`${fx.coordinator}/api/peers`);
    const alive = peers.filter((p) => p.status === 'alive' && p.assignments.some((a) => a.modelId === fx.modelId));
    expect(alive.map((p) => p.peerId)).toContain(keys.tabId);
    const stages: string[][] = [[], []];
    for (const p of alive) for (const a of p.assignments) stages[a.stage].push(p.peerId);
    expect(stages.map((s) => s.length)).toEqual([1, 1]);
    const { relay } = await json<{ relay: { multiaddrs: string[] } }>(`${fx.coordinator}/api/health`);

    const requester = spawnLogged(['--input-type=module', '-e', REQUESTER], logs, 'requester', {
      INFER_JOB: JSON.stringify({
        relay: relay.multiaddrs[0],
        stages,
        dModel: 32,
        model: fx.modelId,
        prompt: [17, 250, 3, 99, 512],
        tokens: N,
      }),
    });
    children.push(requester);
    const result = await jsonLine<{ tokens: number[]; finish: string; ms: number; hops: number }>(
      requester,
      'RESULT ',
      logs,
    ).catch(async (e: Error) => {
      throw new Error(`${e.message}\n[tab]\n${await activity.innerText()}`);
    });
    console.log(`generated through the tab and the worker: ${JSON.stringify(result)}`);
    // Its first inference request (or two minutes of holding) had the tab measure WGSL against onnxruntime-web on
    // WebGPU and say which serves.
    await expect(activity).toContainText('inference runtime for stage', { timeout: 150_000 });
    const choice = (await activity.innerText()).split('\n').find((l) => l.includes('inference runtime for stage'))!;
    console.log(`tab: ${choice}`);
    // ORT loaded on the WebGPU EP in the tab and ran the KV-cached graph; its outputs agreed with WGSL's on the
    // same inputs (unless the tab trained a step during every try, which makes them incomparable).
    const rate = String.raw`TTFT [\d.]+ ms, \d+ tokens\/s`;
    const measured = `measured: wgsl ${rate}; onnx-webgpu ${rate}`;
    const agreed = new RegExp(String.raw`${measured}, relative error ([\d.]+e[-+]\d+); ORT export \d+ ms`).exec(choice);
    const untested = new RegExp(
      String.raw`${measured}, not compared: the stage trained during each try; ORT export \d+ ms`,
    ).test(choice);
    expect(agreed || untested, choice).toBeTruthy();
    if (agreed) expect(Number(agreed[1])).toBeLessThanOrEqual(1e-3);
    expect(choice).toMatch(/: (wgsl|onnx-webgpu) \(measured/);

    expect(result.tokens).toHaveLength(N);
    for (const t of result.tokens) expect(Number.isInteger(t) && t >= 0 && t < 1024).toBe(true);
    expect(result.finish).toBe('length');
    expect(
      logs.filter((l) => l.startsWith('[requester]') && /failed|retrying/.test(l)),
      logs.join('\n'),
    ).toEqual([]);
    // The tab logged no refused request.
    expect(await activity.innerText()).not.toContain('inference request from');
  } finally {
    await stopAll(children);
    rmSync(dir, { recursive: true, force: true });
  }
});
