/**
 * `npm run bench:infer`: inference speed.
 *  1. Generation through the swarm (a coordinator and two `npm run worker` processes holding the two stages,
 *     over /tessera/infer/1.0.0) against the same model generating in this process with the same kernels and
 *     KV caches: time to first token and tokens/s, greedy, same prompt; the token lists must agree. The workers
 *     serve with WGSL (--infer-runtime wgsl) so both sides run the same kernels; ORT's serving is part 3.
 *  2. One stage's forward on onnxruntime-web (wasm EP in Node) against our WGSL forward on the same machine.
 *  3. Serving one stage with KV caches: time to first token (the prompt's prefill) and decode tokens/s of the
 *     WGSL runtime (StageInference) and the ORT runtime (the KV-cached ONNX graph), as measureRuntimes times
 *     them when a holder chooses (src/infer/stage-runtime.ts), with more tokens and rounds.
 * Writes bench/results/infer.{json,md}. Options: --tokens=N (default 24).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { cli, intAtLeast } from '../src/cli/args.ts';
import { startCoordinator } from '../src/cli/coordinator.ts';
import { adapterLabel } from '../src/gpu/adapter-info.ts';
import { Gpu, type Tensor } from '../src/gpu/index.ts';
import { greedyRequest, type InferenceBackend } from '../src/infer/backend.ts';
import { greedy } from '../src/infer/sample.ts';
import { StageInference, type StageStepResult } from '../src/infer/stage-infer.ts';
import { measureRuntimes, type RuntimeChoice } from '../src/infer/stage-runtime.ts';
import { Stage } from '../src/model/stage.ts';
import { splitStages } from '../src/model/stages.ts';
import { smallSpec } from '../src/train/run-spec.ts';
import { compareStageRuntimes, stageRuntimeTable } from './onnx-stage.ts';
import { table } from '../src/cli/table.ts';
import { gitCommit } from './table.ts';

const root = resolve(import.meta.dirname, '..');
const TOKENS = cli({
  name: 'bench:infer',
  usage: 'npm run bench:infer -- [options]',
  description:
    'Inference speed: generation through the swarm against one process, one stage on onnxruntime-web against ' +
    'WGSL, and serving one stage with KV caches. Writes bench/results/infer.{json,md}.',
})
  // Decode speed is measured after the first token, so a run needs two.
  .option('--tokens <n>', 'tokens generated per run (≥ 2)', intAtLeast(2), 24)
  .parse()
  .opts<{ tokens: number }>().tokens;
const spec = smallSpec({ layout: [2, 2], microBatches: 2, batch: 1, seed: 7 }, { dModel: 64, heads: 4, context: 128 });
const cfg = spec.model;
const PROMPT = Array.from({ length: 32 }, (_, i) => (i * 37 + 11) % cfg.vocab);

interface Timing {
  ttftMs: number;
  tokensPerSecond: number;
  tokens: number[];
}

async function inProcess(gpu: Gpu): Promise<Timing> {
  const stages = splitStages(cfg, 2).map(
    (spec) => new StageInference(Stage.create(gpu, cfg, spec), { maxSessions: 1 }),
  );
  const t0 = performance.now();
  let first = 0;
  const tokens: number[] = [];
  let input: number[] = PROMPT;
  for (let i = 0; i < TOKENS; i++) {
    let x: Tensor | Int32Array = Int32Array.from(input);
    for (const s of stages) {
      const r: StageStepResult = i === 0 ? s.prefill('bench', x, { logits: 'last' }) : s.decode('bench', x);
      x = (r.output ?? r.logits)!;
    }
    const logits = (await gpu.read(x as Tensor)) as Float32Array;
    gpu.release(x as Tensor);
    tokens.push(greedy(logits.subarray(logits.length - cfg.vocab)));
    if (i === 0) first = performance.now();
    input = [tokens[i]];
  }
  const end = performance.now();
  for (const s of stages) {
    s.destroy();
    s.stage.destroy();
  }
  return { ttftMs: first - t0, tokensPerSecond: (TOKENS - 1) / ((end - first) / 1000), tokens };
}

async function throughSwarm(): Promise<Timing & { hops: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-bench-infer-'));
  const children: ChildProcess[] = [];
  const coord = await startCoordinator({ dbPath: join(dir, 'c.db'), heartbeatMs: 2000, registerDefault: false });
  try {
    const res = await fetch(`${coord.url}/api/models`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'bench-infer', name: 'bench', spec }),
    });
    if (!res.ok) throw new Error(`registering the model: ${await res.text()}`);
    await Promise.all(
      [1, 2].map(
        (i) =>
          new Promise<void>((ready, fail) => {
            const child = spawn(
              join(root, 'node_modules/.bin/node'),
              [
                '--import',
                './scripts/register.ts',
                'src/cli/worker.ts',
                '--coordinator',
                coord.url,
                '--key',
                join(dir, `w${i}.key`),
                '--until-step',
                '0',
                '--stay',
                '--tokens-per-second',
                '100',
                '--infer-runtime',
                'wgsl',
              ],
              { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
            );
            children.push(child);
            let out = '';
            const keep = (d: Buffer) => {
              out += d;
              if (out.includes('serving inference until stopped')) ready();
            };
            child.stdout!.on('data', keep);
            child.stderr!.on('data', keep);
            child.on('exit', (code) => fail(new Error(`worker ${i} exited (${code}):\n${out.slice(-2000)}`)));
          }),
      ),
    );
    const backend = (coord as unknown as { inference: InferenceBackend & { stats: { hops: number } } }).inference;
    const run = async () => {
      const t0 = performance.now();
      let first = 0;
      const out = await backend.generate(greedyRequest('bench-infer', PROMPT, TOKENS), () => {
        if (!first) first = performance.now();
      });
      const end = performance.now();
      return { ttftMs: first - t0, tokensPerSecond: (TOKENS - 1) / ((end - first) / 1000), tokens: out.tokens };
    };
    await run(); // warm-up: pipelines compile, streams open
    const hops0 = backend.stats.hops;
    const r = await run();
    return { ...r, hops: backend.stats.hops - hops0 };
  } finally {
    for (const c of children) c.kill('SIGKILL');
    await coord.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const gpu = await Gpu.create();
const device = adapterLabel(gpu.adapter);
console.log(
  `[bench] device ${device}; model d_model ${cfg.dModel}, ${cfg.layers} layers, vocab ${cfg.vocab}; prompt ` +
    `${PROMPT.length} tokens, ${TOKENS} generated`,
);
await inProcess(gpu); // warm-up
const local = await inProcess(gpu);
console.log(`[bench] in-process: TTFT ${local.ttftMs.toFixed(0)} ms, ${local.tokensPerSecond.toFixed(1)} tokens/s`);
const swarm = await throughSwarm();
console.log(`[bench] swarm: TTFT ${swarm.ttftMs.toFixed(0)} ms, ${swarm.tokensPerSecond.toFixed(1)} tokens/s`);
const same = JSON.stringify(local.tokens) === JSON.stringify(swarm.tokens);
const runtimes = await compareStageRuntimes(gpu, cfg, { stages: 2, log: (l) => console.log(`[bench] ${l}`) });
const serving: Array<RuntimeChoice & { stage: number }> = [];
for (const spec of splitStages(cfg, 2)) {
  const stage = Stage.create(gpu, cfg, spec);
  const m = await measureRuntimes(stage, { promptTokens: PROMPT.length, decodeTokens: TOKENS, rounds: 5 });
  stage.destroy();
  const rates = m.results.map(
    (r) => `${r.name} TTFT ${r.ttftMs.toFixed(2)} ms, ${r.tokensPerSecond.toFixed(0)} tokens/s`,
  );
  console.log(`[bench] serving stage ${spec.index}/2: ${rates.join('; ')} → ${m.chosen}`);
  serving.push({ stage: spec.index, ...m });
}
gpu.destroy();

const commit = gitCommit(root) ?? '';
const md = [
  '## Inference',
  '',
  `Generated by \`npm run bench:infer\` on ` +
    `${new Date().toISOString().slice(0, 10)}${commit ? ` at ${commit}` : ''}; device: ${device}. Model: ` +
    `d_model ${cfg.dModel}, ${cfg.layers} layers in 2 stages, vocab ${cfg.vocab}; greedy, ` +
    `${PROMPT.length}-token prompt, ${TOKENS} tokens.`,
  '',
  '### Generation',
  '',
  table(
    ['where', 'time to first token (ms)', 'tokens/s', 'vs in-process'],
    [
      ['in one process (KV caches, same kernels)', local.ttftMs.toFixed(0), local.tokensPerSecond.toFixed(1), '1.00×'],
      [
        'through the swarm (2 worker processes, coordinator-driven hops)',
        swarm.ttftMs.toFixed(0),
        swarm.tokensPerSecond.toFixed(1),
        `${(swarm.tokensPerSecond / local.tokensPerSecond).toFixed(2)}×`,
      ],
    ],
  ),
  '',
  `Same tokens: ${same ? 'yes' : 'NO'}. The swarm made ${swarm.hops} stream round trips for ${TOKENS} tokens ` +
    `(one per stage per token through the coordinator's relay connections, plus one per stage to end the ` +
    `session); its two worker processes share this machine's 2 cores with the coordinator.`,
  '',
  '### One stage: onnxruntime-web (wasm) vs our WGSL',
  '',
  stageRuntimeTable(runtimes),
  '',
  '### Serving one stage with KV caches: WGSL vs onnxruntime-web (wasm), as a holder measures them',
  '',
  table(
    [
      'stage',
      'runtime',
      'time to first token (ms)',
      'decode tokens/s',
      'prompt + decode (ms)',
      'relative error vs WGSL',
      'chosen',
    ],
    serving.flatMap((s) =>
      s.results.map((r) => [
        `${s.stage}/2`,
        r.name,
        r.ttftMs.toFixed(2),
        r.tokensPerSecond.toFixed(0),
        r.totalMs.toFixed(1),
        r.relativeError?.toExponential(1) ?? 'not compared',
        r.name === s.chosen ? 'yes' : '',
      ]),
    ),
    ['l', 'l', 'r', 'r', 'r', 'r', 'l'],
  ),
  '',
  `Per stage: a ${PROMPT.length}-token prompt, then ${TOKENS} single-token steps, host input in and host ` +
    `output out (the last stage gives the last row's logits); medians of 5 rounds after a warm-up, the ` +
    `runtimes alternating. A holder runs the same measurement (smaller) when its stage changes and serves ` +
    `with the one that took least.`,
  '',
];
const text = md.join('\n');
console.log(`\n${text}`);
mkdirSync(join(root, 'bench/results'), { recursive: true });
writeFileSync(
  join(root, 'bench/results/infer.json'),
  JSON.stringify(
    {
      date: new Date().toISOString(),
      commit,
      device,
      model: cfg,
      prompt: PROMPT.length,
      tokens: TOKENS,
      inProcess: local,
      swarm,
      sameTokens: same,
      stageRuntimes: runtimes,
      stageServing: serving,
    },
    null,
    2,
  ) + '\n',
);
writeFileSync(join(root, 'bench/results/infer.md'), text + '\n');
if (!same) process.exitCode = 1;
