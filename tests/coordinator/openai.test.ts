import { join } from 'node:path';
import OpenAI from 'openai';
import { privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANVIL_KEYS, startAnvil, type Anvil } from '../../src/chain/anvil.ts';
import { chainClients, escrowAccount, escrowDeposit, withdrawableOf } from '../../src/chain/client.ts';
import { deployTessera } from '../../src/chain/deploy.ts';
import { Coordinator } from '../../src/coordinator/coordinator.ts';
import type { GenerateRequest, InferenceBackend } from '../../src/coordinator/openai.ts';
import { loadTokenizer } from '../../src/data/brown-node.ts';
import { signRequest, signedFetch } from '../../src/ledger/request-auth.ts';
import { soleHolder } from '../chain/fixtures.ts';
import { memoryLog, tempDir } from './fixtures.ts';

/**
 * The OpenAI-compatible API and its payments, driven by the official `openai` client against a real coordinator
 * and anvil. Generation is a deterministic stand-in backend here (this tests the API module: shapes, streaming,
 * usage, signatures, balances, charging); generation by stage holders is tested with the inference engine.
 */
const VOCAB = 1024;
const PRICE_ETH_PER_1K = 0.001; // 1e15 wei per 1,000 tokens = 1e12 wei per token
const WEI_PER_TOKEN = 10n ** 12n;

class CountingBackend implements InferenceBackend {
  fail = false;
  calls = 0;
  async generate(req: GenerateRequest, onToken: (id: number) => void) {
    this.calls++;
    if (this.fail) throw new Error('stage 2 holder vanished mid-generation');
    const tokens: number[] = [];
    for (let i = 0; i < req.maxTokens; i++) {
      const t = (req.prompt[req.prompt.length - 1] + 1 + i) % VOCAB;
      tokens.push(t);
      onToken(t);
    }
    return { tokens, finish: 'length' as const };
  }
}

describe('OpenAI-compatible inference API (coordinator + anvil + openai client)', () => {
  const tmp = tempDir();
  const logs = memoryLog();
  const backend = new CountingBackend();
  const tok = loadTokenizer(VOCAB);
  const payer = privateKeyToAccount(ANVIL_KEYS[5]);
  const poor = privateKeyToAccount(ANVIL_KEYS[6]);
  const holder = privateKeyToAccount(ANVIL_KEYS[2]);
  let anvil: Anvil;
  let coord: Coordinator;
  let client: OpenAI;
  const model = {
    id: 'inf-tiny',
    name: 'Inference tiny',
    config: { vocab: VOCAB, dModel: 16, heads: 2, layers: 2, context: 64 },
    layout: [1, 1],
    codec: 'none',
    microBatches: 2,
    batch: 1,
    pricePer1kTokens: PRICE_ETH_PER_1K,
  };
  const available = async () =>
    BigInt((await (await fetch(`${coord.url}/api/payers/${payer.address}`)).json()).available);

  beforeAll(async () => {
    anvil = await startAnvil();
    const deployment = await deployTessera({
      rpcUrl: anvil.rpcUrl,
      chainId: anvil.chainId,
      deployerKey: ANVIL_KEYS[0],
      settlerAddress: privateKeyToAccount(ANVIL_KEYS[1]).address,
      challengeDelaySeconds: 0,
    });
    coord = await Coordinator.start({
      dbPath: join(tmp.dir, 'c.db'),
      log: logs.log,
      inference: backend,
      chain: { deployment, settlerKey: ANVIL_KEYS[1], ownerKey: ANVIL_KEYS[0] },
    });
    expect(
      (
        await fetch(`${coord.url}/api/models`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(model),
        })
      ).status,
    ).toBe(201);
    // Revenue needs share holders: one epoch gives the holder all 1000 shares.
    await coord.chain!.ensureModel(model.id, model.name);
    await soleHolder(
      chainClients(anvil.rpcUrl, anvil.chainId, ANVIL_KEYS[1]),
      chainClients(anvil.rpcUrl, anvil.chainId, ANVIL_KEYS[2]),
      coord.chain!.info().models[model.id],
      1000n,
    );
    await escrowDeposit(chainClients(anvil.rpcUrl, anvil.chainId, ANVIL_KEYS[5]), deployment.escrow!, 10n ** 17n);
    client = new OpenAI({
      baseURL: `${coord.url}/v1`,
      apiKey: 'unused: requests are signed',
      fetch: signedFetch(payer),
      maxRetries: 0,
    });
  });
  afterAll(async () => {
    await coord?.stop();
    await anvil?.stop();
    tmp.cleanup();
  });

  it('lists models with their price', async () => {
    const list = await client.models.list();
    const m = list.data.find((x) => x.id === model.id) as unknown as {
      price: { wei_per_1k_tokens: string };
      context_length: number;
    };
    expect(m.price.wei_per_1k_tokens).toBe(String(1000n * WEI_PER_TOKEN));
    expect(m.context_length).toBe(64);
  });

  it('completes with usage as OpenAI clients expect, and debits exactly prompt + completion tokens', async () => {
    const before = await available();
    const prompt = 'The jury said';
    const ids = tok.encode(prompt);
    const r = await client.completions.create({ model: model.id, prompt, max_tokens: 5 });
    const expected = Array.from({ length: 5 }, (_, i) => (ids[ids.length - 1] + 1 + i) % VOCAB);
    expect(r.object).toBe('text_completion');
    expect(r.choices[0].text).toBe(tok.decode(expected));
    expect(r.choices[0].finish_reason).toBe('length');
    expect(r.usage).toEqual({ prompt_tokens: ids.length, completion_tokens: 5, total_tokens: ids.length + 5 });
    expect(before - (await available())).toBe(BigInt(ids.length + 5) * WEI_PER_TOKEN);
  });

  it(
    'streams chat completions as server-sent events whose pieces add up to the answer, with usage at ' + 'the end',
    async () => {
      const messages = [
        { role: 'system' as const, content: 'Be brief.' },
        { role: 'user' as const, content: 'Who won?' },
      ];
      const stream = await client.chat.completions.create({
        model: model.id,
        messages,
        max_tokens: 4,
        stream: true,
        stream_options: { include_usage: true },
      });
      let text = '';
      let usage: OpenAI.CompletionUsage | undefined;
      let finish: string | null = null;
      for await (const c of stream) {
        text += c.choices[0]?.delta?.content ?? '';
        finish = c.choices[0]?.finish_reason ?? finish;
        usage = c.usage ?? usage;
      }
      const ids = tok.encode('System: Be brief.\nUser: Who won?\nAssistant:');
      expect(text).toBe(tok.decode(Array.from({ length: 4 }, (_, i) => (ids[ids.length - 1] + 1 + i) % VOCAB)));
      expect(finish).toBe('length');
      expect(usage).toMatchObject({ prompt_tokens: ids.length, completion_tokens: 4 });
    },
  );

  it('402 without enough deposit, and a failed generation costs nothing', async () => {
    const broke = new OpenAI({ baseURL: `${coord.url}/v1`, apiKey: 'x', fetch: signedFetch(poor), maxRetries: 0 });
    const calls = backend.calls;
    await expect(broke.completions.create({ model: model.id, prompt: 'Hello', max_tokens: 3 })).rejects.toMatchObject({
      status: 402,
    });
    expect(backend.calls).toBe(calls); // nothing ran
    const before = await available();
    backend.fail = true;
    await expect(client.completions.create({ model: model.id, prompt: 'Hello', max_tokens: 3 })).rejects.toMatchObject({
      status: 503,
    });
    backend.fail = false;
    expect(await available()).toBe(before);
  });

  it(
    'refuses unsigned, replayed, forged and malformed requests, unknown models and prompts beyond the ' + 'context',
    async () => {
      const url = `${coord.url}/v1/completions`;
      const body = new TextEncoder().encode(JSON.stringify({ model: model.id, prompt: 'Hi', max_tokens: 1 }));
      expect((await fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json' } })).status).toBe(
        401,
      );
      const headers = {
        'content-type': 'application/json',
        ...(await signRequest(payer, 'POST', '/v1/completions', body, 10n ** 18n)),
      };
      expect((await fetch(url, { method: 'POST', body, headers })).status).toBe(200);
      const replay = await fetch(url, { method: 'POST', body, headers });
      expect(replay.status).toBe(401);
      expect((await replay.json()).error.message).toMatch(/replayed/);
      // Another body under the same signature: the signer does not recover.
      const other = new TextEncoder().encode(JSON.stringify({ model: model.id, prompt: 'Hi there', max_tokens: 1 }));
      expect(
        (
          await fetch(url, {
            method: 'POST',
            body: other,
            headers: { ...headers, 'x-tessera-nonce': String(10n ** 18n + 5n) },
          })
        ).status,
      ).toBe(401);
      await expect(client.completions.create({ model: 'nope', prompt: 'Hi', max_tokens: 1 })).rejects.toMatchObject({
        status: 404,
      });
      await expect(
        client.completions.create({ model: model.id, prompt: 'word '.repeat(80), max_tokens: 8 }),
      ).rejects.toMatchObject({ status: 400, message: expect.stringMatching(/exceeds the context of 64/) });
      const bad = new TextEncoder().encode('{"model": ');
      const r = await signedFetch(payer)(url, {
        method: 'POST',
        body: bad,
        headers: { 'content-type': 'application/json' },
      });
      expect(r.status).toBe(400);
      expect((await r.json()).error.message).toMatch(/malformed JSON/);
    },
  );

  it('charges metered usage on chain into the vault: the holder can withdraw exactly it', async () => {
    const addrs = coord.chain!.info().models[model.id];
    const c = chainClients(anvil.rpcUrl, anvil.chainId);
    const escrowBefore = (await escrowAccount(c, coord.chain!.info().escrow!, payer.address)).balance;
    const uncharged = BigInt((await (await fetch(`${coord.url}/api/payers/${payer.address}`)).json()).uncharged);
    expect(uncharged).toBeGreaterThan(0n);
    expect(await coord.payments.chargeUsage()).toBeGreaterThan(0);
    expect((await escrowAccount(c, coord.chain!.info().escrow!, payer.address)).balance).toBe(escrowBefore - uncharged);
    // The holder owns every share: the vault's 2^128-magnified accounting gives it the whole amount (1000 |
    // amount·2^128 / 1000 · 1000).
    const M = 2n ** 128n;
    expect((await withdrawableOf(c, addrs, holder.address)).eth).toBe((1000n * ((uncharged * M) / 1000n)) / M);
    expect(await coord.payments.chargeUsage()).toBe(0); // nothing charged twice
  });
});
