/**
 * `npm run verify-epoch <n>`: recomputes epoch n's Merkle root from what the coordinator publishes (every
 * receipt of epochs 1..n and the bindings), checking every signature again, and compares it with the root
 * the coordinator published and the root posted on chain. Exit code 0 only when all three agree.
 *
 *   npm run verify-epoch -- 3 [--model brown-tiny] [--coordinator http://127.0.0.1:8787] [--rpc <url>]
 */
import { chainClients, readRoot } from '../chain/client.ts';
import { recomputeEpoch, type PublishedBinding } from '../ledger/recompute.ts';
import type { SignedReceipt } from '../ledger/receipt.ts';
import { ProgressBar } from '../train/progress.ts';
import type { EpochDetail, EpochReceiptsPage, ModelDetail } from '../wire/index.ts';
import { cli, httpUrl, nonEmpty, positiveInt } from './args.ts';
import { DEFAULT_COORDINATOR_URL, DEFAULT_MODEL_ID } from './defaults.ts';

interface VerifyCli {
  model: string;
  coordinator: string;
  rpc?: string;
}

const program = cli({
  name: 'verify-epoch',
  usage: 'npm run verify-epoch -- <epoch> [options]',
  description:
    "Recomputes an epoch's Merkle root from what the coordinator publishes (every receipt of epochs " +
    '1..n and the bindings), checking every signature again, and compares it with the published and ' +
    'the on-chain root. Exit code 0 only when all three agree, 1 on a mismatch, 2 when it cannot ' +
    'check.',
})
  .argument('<epoch>', 'the epoch to verify (≥ 1)', positiveInt)
  .option('--model <id>', 'the model the epoch belongs to', nonEmpty, DEFAULT_MODEL_ID)
  .option('--coordinator <url>', "the coordinator's HTTP API", httpUrl, DEFAULT_COORDINATOR_URL)
  .option(
    '--rpc <url>',
    'read the on-chain root from this RPC endpoint (default: the one the coordinator publishes)',
    httpUrl,
  )
  .parse();
const values = program.opts<VerifyCli>();
const n = program.processedArgs[0] as number;
const url = values.coordinator;
const model = values.model;

/** What this command reads of `GET /api/chain`. */
interface ChainAnswer {
  chain: { chainId: number; rpcUrl: string; models?: Record<string, Parameters<typeof readRoot>[1]> } | null;
}

async function get<T>(path: string): Promise<T> {
  const res = await fetch(url + path);
  const body = (await res.json()) as T & { error?: string };
  if (!res.ok) throw new Error(`${path}: ${res.status} ${body.error ?? ''}`);
  return body;
}

try {
  const m = (await get<{ model: ModelDetail }>(`/api/models/${encodeURIComponent(model)}`)).model;
  const epoch = await get<EpochDetail>(`/api/models/${encodeURIComponent(model)}/epochs/${n}`);
  const receipts: SignedReceipt[][] = [];
  const bar = new ProgressBar({ plainEvery: 1 });
  const t0 = performance.now();
  for (let e = 1; e <= n; e++) {
    const rs: SignedReceipt[] = [];
    for (let after = 0; ; ) {
      const page = await get<EpochReceiptsPage<SignedReceipt>>(
        `/api/models/${encodeURIComponent(model)}/epochs/${e}/receipts?since=${after}&limit=1000`,
      );
      for (const { id: _id, ...r } of page.receipts) rs.push(r);
      if (page.receipts.length < 1000) break;
      after = page.next;
    }
    receipts.push(rs);
    bar.update({ step: e, total: n, elapsed: (performance.now() - t0) / 1000 });
  }
  bar.done();
  const chain = (await get<ChainAnswer>('/api/chain')).chain;
  const chainId = chain?.chainId ?? 31337;
  const mine = await recomputeEpoch(m.layout.length, receipts, epoch.bindings as PublishedBinding[], chainId);
  let onChain: string | null = null;
  const addrs = chain?.models?.[model];
  if (addrs) onChain = (await readRoot(chainClients(values.rpc ?? chain.rpcUrl, chainId), addrs, BigInt(n))).root;
  const zero = /^0x0{64}$/;
  console.log(`epoch ${n} of ${model}: ${mine.receipts} receipts over epochs 1..${n}, ${mine.leaves.length} wallet(s)`);
  console.log(`  recomputed root  ${mine.root}`);
  console.log(`  published root   ${epoch.root}`);
  console.log(`  on-chain root    ${onChain === null ? '(no chain)' : zero.test(onChain) ? '(not posted)' : onChain}`);
  for (const p of mine.problems) console.log(`  problem: ${p}`);
  const ok =
    mine.problems.length === 0 &&
    mine.root === epoch.root &&
    (onChain === null ? epoch.root === null : onChain === epoch.root);
  console.log(
    ok ? 'OK: the root follows from the published receipts and bindings' : 'MISMATCH: do not trust this epoch',
  );
  process.exit(ok ? 0 : 1);
} catch (e) {
  console.error(`verify-epoch: ${(e as Error).message}`);
  process.exit(2);
}
