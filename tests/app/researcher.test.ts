import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id';
import { privateKeyToAccount } from 'viem/accounts';
import { describe, expect, it } from 'vitest';
import type { MetricRecord, Topology } from '../../src/app/coordinator-api.ts';
import { formatFlopRate, formatFlops, formatPercent, formatRate, formatTokensPerSecond } from '../../src/app/format.ts';
import {
  completionBody,
  explainPromptError,
  PromptError,
  streamCompletion,
  type PromptPiece,
} from '../../src/app/researcher/prompt.ts';
import {
  codecRows,
  COLUMN_WIDTH,
  linkLabel,
  lossSeries,
  mergeMetrics,
  mergeThroughput,
  recentThroughput,
  topologyGraph,
  topologySummary,
} from '../../src/app/researcher/shape.ts';
import { hashParam, routeOf, withHashParam } from '../../src/app/route.ts';
import { readSse, SseParser } from '../../src/app/sse.ts';
import { holdReason } from '../../src/app/volunteer/settings.ts';
import { signTeamJoin, teamJoinMessage } from '../../src/app/volunteer/teams.ts';
import { teamJoinMessage as coordinatorTeamJoinMessage } from '../../src/coordinator/teams.ts';
import { verifyRequest } from '../../src/ledger/request-auth.ts';

const metric = (id: number, step: number, kind: 'train' | 'val', value: number): MetricRecord => ({
  id,
  modelId: 'm',
  step,
  kind,
  value,
  at: 1000 + id,
});

function stream(chunks: Array<string | Uint8Array>): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return new ReadableStream({
    start(c) {
      for (const x of chunks) c.enqueue(typeof x === 'string' ? enc.encode(x) : x);
      c.close();
    },
  });
}

describe('server-sent events', () => {
  it('parses events split anywhere, CRLF split across chunks included', () => {
    const text =
      'event: snapshot\r\ndata: {"a":1}\r\n\r\n: keep-alive\n\n' +
      'data: line one\ndata:line two\n\nevent: metric\ndata: 3\n\n';
    for (let cut = 0; cut <= text.length; cut++) {
      const p = new SseParser();
      const events = [...p.push(text.slice(0, cut)), ...p.push(text.slice(cut))];
      expect(events, `cut at ${cut}`).toEqual([
        { event: 'snapshot', data: '{"a":1}' },
        { event: 'message', data: 'line one\nline two' },
        { event: 'metric', data: '3' },
      ]);
    }
  });

  it('drops an event the stream ends before closing, and blank lines without data', () => {
    const p = new SseParser();
    expect(p.push('\n\nevent: x\n\n')).toEqual([]);
    expect(p.push('data: half')).toEqual([]);
    p.end();
    expect(p.push('\n')).toEqual([]);
  });

  it('reads a fetch body with a UTF-8 character split between chunks', async () => {
    const bytes = new TextEncoder().encode('data: naïve → ok\n\n');
    const split = bytes.indexOf(0xc3) + 1; // inside "ï"
    const got = [];
    for await (const e of readSse(stream([bytes.slice(0, split), bytes.slice(split)]))) got.push(e);
    expect(got).toEqual([{ event: 'message', data: 'naïve → ok' }]);
  });
});

describe('live training charts', () => {
  it('keeps one record per step and kind (a re-sent one replaces it), in step order, capped', () => {
    const a = mergeMetrics(
      [metric(1, 0, 'train', 3), metric(2, 1, 'train', 2.9)],
      [metric(3, 1, 'train', 2.8), metric(4, 1, 'val', 3.1), metric(5, 2, 'train', NaN)],
    );
    expect(a.map((m) => [m.step, m.kind, m.value])).toEqual([
      [0, 'train', 3],
      [1, 'train', 2.8],
      [1, 'val', 3.1],
    ]);
    expect(
      mergeMetrics([], [metric(1, 5, 'train', 1), metric(2, 3, 'train', 1), metric(3, 9, 'train', 1)], 2).map(
        (m) => m.step,
      ),
    ).toEqual([5, 9]);
  });

  it('puts training and validation loss of a step on one point', () => {
    expect(
      lossSeries([
        metric(1, 0, 'train', 3),
        metric(2, 1, 'train', 2.5),
        metric(3, 1, 'val', 2.7),
        metric(4, 4, 'val', 2.2),
      ]),
    ).toEqual([
      { step: 0, train: 3 },
      { step: 1, train: 2.5, val: 2.7 },
      { step: 4, val: 2.2 },
    ]);
  });

  it('orders throughput by step, drops bad figures and averages the recent ones', () => {
    const p = mergeThroughput(
      [{ step: 2, at: 2, tokensPerSecond: 300 }],
      [
        { step: 1, at: 1, tokensPerSecond: 100 },
        { step: 3, at: 3, tokensPerSecond: -1 },
        { step: 2, at: 4, tokensPerSecond: 200 },
      ],
    );
    expect(p).toEqual([
      { step: 1, at: 1, tokensPerSecond: 100 },
      { step: 2, at: 4, tokensPerSecond: 200 },
    ]);
    expect(recentThroughput(p)).toBe(150);
    expect(recentThroughput(p, 1)).toBe(200);
    expect(recentThroughput([])).toBeUndefined();
  });
});

const TOPOLOGY: Topology = {
  modelId: 'm',
  stages: [
    {
      index: 0,
      firstLayer: 0,
      endLayer: 2,
      hasEmbedding: true,
      hasHead: false,
      peers: [
        { peerId: 'A1', replica: 1, kind: 'node', tokensPerSecond: 90, team: null },
        { peerId: 'A0', replica: 0, kind: 'browser', tokensPerSecond: 50, team: 'red' },
      ],
    },
    {
      index: 1,
      firstLayer: 2,
      endLayer: 3,
      hasEmbedding: false,
      hasHead: true,
      peers: [{ peerId: 'B0', replica: 0, kind: 'node', tokensPerSecond: 1234.5, team: null }],
    },
    { index: 2, firstLayer: 3, endLayer: 4, hasEmbedding: false, hasHead: true, peers: [] },
  ],
  links: [
    { from: 'B0', to: 'A0', kind: 'pipeline', bytesPerSecond: 1_250_000, rttMs: 12.4, at: 1 },
    { from: 'A0', to: 'B0', kind: 'pipeline', bytesPerSecond: 1_000_000, rttMs: 12, at: 1 },
    { from: 'A1', to: 'A0', kind: 'sync', bytesPerSecond: 2048, rttMs: null, at: 1 },
    { from: 'A0', to: 'GONE', kind: 'pipeline', bytesPerSecond: 5, rttMs: 1, at: 1 },
  ],
  boundaries: [
    { after: 1, codec: 'int8', bytesPerToken: null, rawBytesPerToken: 512 },
    { after: 0, codec: 'int8', bytesPerToken: 130, rawBytesPerToken: 512 },
  ],
};

describe('topology diagram', () => {
  const { nodes, edges } = topologyGraph(TOPOLOGY);

  it('draws stages as columns with their peers below in replica order', () => {
    const pos = Object.fromEntries(nodes.map((n) => [n.id, n.position]));
    expect(pos['stage-0'].x).toBe(0);
    expect(pos['stage-1'].x).toBe(COLUMN_WIDTH);
    expect(pos.A0.x).toBe(0);
    expect(pos.A1.x).toBe(0);
    expect(pos.A0.y).toBeLessThan(pos.A1.y);
    expect(pos.B0.x).toBe(COLUMN_WIDTH);
    expect(nodes.find((n) => n.id === 'stage-0')!.data).toEqual({ label: 'Stage 1', detail: 'layers 1–2 + embedding' });
    const b0 = nodes.find((n) => n.id === 'B0')!.data;
    expect(b0).toMatchObject({ kind: 'node', replica: 0, speed: '1,235 tok/s', label: 'Node B0' });
  });

  it('labels links with bandwidth and RTT, pipeline left to right, each pair once, none to departed peers', () => {
    expect(edges.map((e) => [e.id, e.source, e.target, e.label])).toEqual([
      ['pipeline:A0->B0', 'A0', 'B0', '1.25 MB/s · 12 ms'],
      ['sync:A0->A1', 'A0', 'A1', '2.05 kB/s'],
    ]);
    expect(edges[0].sourceHandle).toBe('right');
    expect(edges[1].sourceHandle).toBe('bottom');
    expect(linkLabel(999, 0.4)).toBe('999 B/s · 0 ms');
  });

  it('says the same in words, naming stages with no holder', () => {
    expect(topologySummary(TOPOLOGY)).toBe('3 stages, 3 peers, 4 measured links; stage 3 has no holder.');
  });

  it("lists each boundary's codec with measured against raw bytes per token", () => {
    expect(codecRows(TOPOLOGY.boundaries)).toEqual([
      { boundary: 'Stage 1 → 2', codec: 'int8', measured: 130, raw: 512, ratio: 512 / 130 },
      { boundary: 'Stage 2 → 3', codec: 'int8', measured: null, raw: 512, ratio: null },
    ]);
  });
});

describe('prompt box', () => {
  const account = privateKeyToAccount('0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d');

  /** A fetch that records what it was sent and answers `answer`. */
  function fakeFetch(answer: () => Response) {
    const seen: Array<{ url: string; method: string; headers: Record<string, string>; body: Uint8Array }> = [];
    const f = (async (input: RequestInfo | URL, init?: RequestInit) => {
      const req = new Request(input, init);
      seen.push({
        url: req.url,
        method: req.method,
        headers: Object.fromEntries(req.headers),
        body: new Uint8Array(await req.arrayBuffer()),
      });
      return answer();
    }) as typeof fetch;
    return { f, seen };
  }

  const chunk = (text: string, finish: string | null = null) =>
    `data: ${JSON.stringify({ object: 'text_completion', choices: [{ index: 0, text, finish_reason: finish }] })}\n\n`;

  it('signs the request as request-auth specifies and streams the tokens, usage and finish', async () => {
    const sse = [
      chunk(' the'),
      chunk(' grand'),
      chunk('', 'length'),
      `data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } })}` +
        '\n\n',
      'data: [DONE]\n\n',
    ];
    const { f, seen } = fakeFetch(
      () => new Response(stream(sse), { status: 200, headers: { 'content-type': 'text/event-stream' } }),
    );
    const pieces: PromptPiece[] = [];
    for await (const p of streamCompletion(
      { model: 'tiny', prompt: 'The jury said', maxTokens: 2, temperature: 0 },
      account,
      { url: 'http://coord.test/v1/completions', fetcher: f },
    ))
      pieces.push(p);
    expect(pieces).toEqual([
      { text: ' the' },
      { text: ' grand' },
      { finish: 'length' },
      { usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } },
    ]);
    const [req] = seen;
    expect(req.method).toBe('POST');
    expect(JSON.parse(new TextDecoder().decode(req.body))).toEqual(
      completionBody({ model: 'tiny', prompt: 'The jury said', maxTokens: 2, temperature: 0 }),
    );
    expect(JSON.parse(new TextDecoder().decode(req.body))).toMatchObject({ stream: true, max_tokens: 2 });
    // The coordinator's own check accepts it, for this path and body only.
    await expect(verifyRequest(req.headers, 'POST', '/v1/completions', req.body)).resolves.toMatchObject({
      address: account.address,
    });
    await expect(verifyRequest(req.headers, 'POST', '/v1/chat/completions', req.body)).rejects.toThrow(/signed by/);
  });

  it('explains 402 and other refusals in words, and a stream cut before [DONE]', async () => {
    const refused = fakeFetch(() =>
      Response.json(
        { error: { message: 'this request may cost up to 5 wei; 0x… has 0 available', type: 'insufficient_quota' } },
        { status: 402 },
      ),
    );
    const run = async (f: typeof fetch) => {
      for await (const _ of streamCompletion({ model: 'tiny', prompt: 'x', maxTokens: 1, temperature: 1 }, account, {
        url: 'http://coord.test/v1/completions',
        fetcher: f,
      }))
        void _;
    };
    const e = await run(refused.f).catch((x) => x);
    expect(e).toBeInstanceOf(PromptError);
    expect(e.status).toBe(402);
    expect(e.message).toMatch(
      /^Your balance does not cover this request: this request may cost up to 5 wei.*Deposit more/,
    );
    const cut = fakeFetch(() => new Response(stream([chunk('a')]), { status: 200 }));
    await expect(run(cut.f)).rejects.toThrow(/ended before \[DONE\]/);
    expect(explainPromptError(503, 'no holders')).toMatch(/nothing was charged/);
  });

  it('gives every request of a wallet a larger nonce than the last', async () => {
    const { f, seen } = fakeFetch(() => new Response(stream(['data: [DONE]\n\n']), { status: 200 }));
    for (let i = 0; i < 3; i++)
      for await (const _ of streamCompletion({ model: 'm', prompt: 'p', maxTokens: 1, temperature: 1 }, account, {
        url: 'http://coord.test/v1/completions',
        fetcher: f,
      }))
        void _;
    const nonces = seen.map((s) => BigInt(s.headers['x-tessera-nonce']));
    expect(nonces[1] > nonces[0] && nonces[2] > nonces[1]).toBe(true);
  });
});

describe('volunteer helpers', () => {
  it('holds the work only for the reasons the volunteer left switched on', () => {
    const on = { pauseWhenHidden: true, pauseOnBattery: true };
    expect(holdReason({ hidden: true, onBattery: false }, on)).toBe('this tab is hidden');
    expect(holdReason({ hidden: false, onBattery: true }, on)).toBe('this device is running on battery');
    expect(holdReason({ hidden: false, onBattery: undefined }, on)).toBeUndefined();
    expect(
      holdReason({ hidden: true, onBattery: true }, { pauseWhenHidden: false, pauseOnBattery: false }),
    ).toBeUndefined();
    expect(holdReason({ hidden: true, onBattery: true }, { pauseWhenHidden: false, pauseOnBattery: true })).toBe(
      'this device is running on battery',
    );
  });

  it('signs a team join with the peer key over the message the coordinator checks', async () => {
    const key = await generateKeyPair('Ed25519');
    const peerId = peerIdFromPrivateKey(key).toString();
    const body = await signTeamJoin(key, peerId, 'red-team', 'n0nce');
    expect(teamJoinMessage('red-team', peerId, 'n0nce')).toBe(coordinatorTeamJoinMessage('red-team', peerId, 'n0nce'));
    const pub = peerIdFromString(peerId).publicKey!;
    const sig = Uint8Array.from(Buffer.from(body.signature, 'base64'));
    expect(
      await pub.verify(new TextEncoder().encode(coordinatorTeamJoinMessage('red-team', peerId, 'n0nce')), sig),
    ).toBe(true);
    expect(
      await pub.verify(new TextEncoder().encode(coordinatorTeamJoinMessage('blue-team', peerId, 'n0nce')), sig),
    ).toBe(false);
    expect((await signTeamJoin(key, peerId, 'red-team')).nonce).toMatch(/^[0-9a-f]{32}$/);
  });
});

describe('formatters and routes', () => {
  it('scales rates, FLOPs and shares for reading', () => {
    expect(formatRate(850)).toBe('850 B/s');
    expect(formatRate(1_250_000)).toBe('1.25 MB/s');
    expect(formatRate(-1)).toBe('—');
    expect(formatFlops('3200000000000000')).toBe('3.20 PFLOP');
    expect(formatFlops('0')).toBe('0 FLOP');
    expect(formatFlopRate(45_600)).toBe('45.6 kFLOP/s');
    expect(formatTokensPerSecond(12.345)).toBe('12.3 tok/s');
    expect(formatPercent(0.125)).toBe('13%');
    expect(formatPercent(0.05)).toBe('5.0%');
  });

  it('routes the new pages and keeps page settings in the hash', () => {
    expect(routeOf('#/researcher?model=tiny')).toBe('researcher');
    expect(routeOf('#/leaderboards')).toBe('leaderboards');
    expect(hashParam('#/researcher?model=tiny-1&x=2', 'model')).toBe('tiny-1');
    expect(hashParam('#/researcher', 'model')).toBeUndefined();
    expect(withHashParam('#/researcher', 'model', 'a b')).toBe('#/researcher?model=a+b');
    expect(withHashParam('#/researcher?model=a&x=1', 'model', undefined)).toBe('#/researcher?x=1');
    expect(withHashParam('', 'model', 'm')).toBe('#/?model=m');
  });
});
