/**
 * A settling coordinator that dies at the worst moment: `node --import ./scripts/register.ts <this file> <json>`
 * opens the database, links the real chain, and SIGKILLs itself right after a transaction is mined and before the
 * database records it (`root-mined`, `charge-mined`), or right before it is sent (`charge-unsent`, after the batch
 * was written). The kill is a real SIGKILL of this process: nothing after it runs, no finally, no flush.
 */
import type { Address } from 'viem';
import type { Deployment } from '../../src/chain/deployment.ts';
import { ChainLink } from '../../src/coordinator/chain-link.ts';
import { LedgerStore } from '../../src/coordinator/ledger-store.ts';
import { Payments } from '../../src/coordinator/payments.ts';
import { Settlement } from '../../src/coordinator/settlement.ts';
import { Store } from '../../src/coordinator/store.ts';

const { dbPath, deployment, settlerKey, mode } = JSON.parse(process.argv[2]) as {
  dbPath: string;
  deployment: Deployment;
  settlerKey: `0x${string}`;
  mode: 'root-mined' | 'charge-mined' | 'charge-unsent';
};
const log = (level: string, message: string) => console.log(`[${level}] ${message}`);
const die = () => {
  console.log('dying');
  process.kill(process.pid, 'SIGKILL');
};
const store = Store.open(dbPath);
const chain = new ChainLink({ deployment, settlerKey, log });
const postRoot = chain.postRoot.bind(chain);
chain.postRoot = async (modelId, epoch, root) => {
  const r = await postRoot(modelId, epoch, root);
  if (mode === 'root-mined') die();
  return r;
};
const charge = chain.charge.bind(chain);
chain.charge = async (payer: Address, modelId, amount, usage) => {
  if (mode === 'charge-unsent') die();
  const tx = await charge(payer, modelId, amount, usage);
  if (mode === 'charge-mined') die();
  return tx;
};
if (mode === 'root-mined') {
  await new Settlement({ store, ledger: new LedgerStore(store), now: Date.now, log, poster: chain }).postPending();
} else {
  await new Payments({ store, chain, log, now: Date.now }).chargeUsage();
}
// Reaching here means the crash point was never hit: the parent test fails on a clean exit.
console.log('survived');
process.exit(3);
