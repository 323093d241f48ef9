/**
 * `npm run settle`: closes the next epoch of a model now (the coordinator also does it on a timer): verdicts,
 * credits, the Merkle root posted on chain. Prints what each wallet earned.
 *
 *   npm run settle -- [--model brown-tiny] [--epoch N] [--coordinator http://127.0.0.1:8787] [--token-file
 * .tessera/admin-token]
 *
 * --epoch N refuses to close anything but epoch N (a guard against settling twice from two terminals).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { formatUnits } from 'viem';
import { cli, httpUrl, nonEmpty, positiveInt } from './args.ts';
import { DEFAULT_COORDINATOR_URL, DEFAULT_MODEL_ID } from './defaults.ts';
import type { EpochDetail } from '../wire/index.ts';
import { table } from './table.ts';

interface SettleCli {
  model: string;
  epoch?: number;
  coordinator: string;
  tokenFile: string;
}

const values = cli({
  name: 'settle',
  usage: 'npm run settle -- [options]',
  description:
    'Closes the next epoch of a model now (the coordinator also does it on a timer): verdicts, ' +
    'credits, the Merkle root posted on chain. Prints what each wallet earned.',
})
  .option('--model <id>', 'the model whose epoch to close', nonEmpty, DEFAULT_MODEL_ID)
  .option(
    '--epoch <n>',
    'refuse to close anything but epoch n (a guard against settling twice from two terminals)',
    positiveInt,
  )
  .option('--coordinator <url>', "the coordinator's HTTP API", httpUrl, DEFAULT_COORDINATOR_URL)
  .option('--token-file <file>', 'the admin token the coordinator wrote on start', nonEmpty, '.tessera/admin-token')
  .parse()
  .opts<SettleCli>();
const url = values.coordinator;
const model = values.model;
const tokenFile = resolve(values.tokenFile);
let token: string;
try {
  token = readFileSync(tokenFile, 'utf8').trim();
} catch (e) {
  console.error(
    `settle: cannot read the admin token ${tokenFile} (${(e as Error).message}); the coordinator writes it on start`,
  );
  process.exit(2);
}
const body = values.epoch === undefined ? {} : { epoch: values.epoch };
let res: Response;
try {
  res = await fetch(`${url}/api/models/${encodeURIComponent(model)}/epochs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
} catch (e) {
  console.error(`settle: coordinator at ${url} unreachable: ${(e as Error).message}`);
  process.exit(2);
}
const e = (await res.json()) as EpochDetail & { error?: string };
if (!res.ok) {
  console.error(`settle: ${res.status} ${e.error ?? ''}`);
  process.exit(1);
}
const prev = new Map<string, bigint>();
if (e.epoch > 1) {
  const before = (await (
    await fetch(`${url}/api/models/${encodeURIComponent(model)}/epochs/${e.epoch - 1}`)
  ).json()) as Partial<EpochDetail>;
  for (const l of before.leaves ?? []) prev.set(l.wallet, BigInt(l.shares));
}
console.log(
  `epoch ${e.epoch} of ${model} settled through step ${e.throughStep}: ${
    Object.entries(e.auditCounts)
      .map(([k, v]) => `${v} audit(s) ${k}`)
      .join(', ') || 'no audits'
  }${e.caught.length ? `; caught: ${e.caught.join(', ')}` : ''}`,
);
console.log(
  table(
    ['wallet', 'new since the last root', 'cumulative shares'],
    e.leaves.map((l: { wallet: string; shares: string }) => [
      l.wallet,
      formatUnits(BigInt(l.shares) - (prev.get(l.wallet) ?? 0n), 18),
      formatUnits(BigInt(l.shares), 18),
    ]),
  ),
);
console.log(`root ${e.root ?? '(none: no bound wallet has credits yet)'}`);
if (e.txHash && e.claimableAt !== null)
  console.log(`posted in ${e.txHash}; claimable from ${new Date(e.claimableAt * 1000).toISOString()}`);
else if (e.root) console.log(`not on chain yet${e.chainError ? `: ${e.chainError}` : ''} (the coordinator retries)`);
