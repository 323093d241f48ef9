import type { Address } from 'viem';
import { formatEther } from 'viem';
import { useConfig } from 'wagmi';
import { writeContract } from 'wagmi/actions';
import { EpochDistributorAbi, RevenueVaultAbi } from '../../chain/artifacts.ts';
import type { ModelAddresses } from '../../chain/deployment.ts';
import type { WalletModel } from './api.ts';
import { EarningsChart } from './EarningsChart.tsx';
import { explainError } from './errors.ts';
import { useModelChain, useTx } from './hooks.ts';
import { formatGflop, formatShares, formatToken, formatWhen, summarize } from './shares.ts';
import { Field, TxStatus } from './ui.tsx';

export interface PaymentToken {
  symbol?: string;
  decimals?: number;
}

const NO_WORK: Pick<WalletModel, 'pendingFlops' | 'epochs' | 'claim'> = { pendingFlops: 0, epochs: [], claim: null };

function Shares({ units, note }: { units: bigint; note: string }) {
  return (
    <>
      <span className="holder-amount">{formatShares(units)}</span> shares
      <span className="holder-sub muted">{`${formatGflop(units)} ${note}`}</span>
    </>
  );
}

/** One model: shares pending → waiting → claimable → claimed, the Claim button, revenue and withdrawals, chart. */
export function ModelCard(p: {
  modelId: string;
  addrs?: ModelAddresses;
  view?: WalletModel;
  account: Address;
  chainId: number;
  payment: PaymentToken;
}) {
  const titleId = `holder-model-${p.modelId}-title`.replace(/[^\w-]/g, '_');
  return (
    <section className="card holder-model" data-testid={`holder-model-${p.modelId}`} aria-labelledby={titleId}>
      <div className="card-head">
        <h2 id={titleId}>
          <code>{p.modelId}</code>
        </h2>
      </div>
      {p.addrs ? (
        <OnChain {...p} addrs={p.addrs} />
      ) : (
        <>
          <p className="notice notice-warn">
            This model is not registered on the chain yet: its shares can be claimed once it is.
          </p>
          <h3>Earnings by epoch</h3>
          <EarningsChart modelId={p.modelId} epochs={p.view?.epochs ?? []} />
        </>
      )}
    </section>
  );
}

function OnChain({
  modelId,
  addrs,
  view,
  account,
  chainId,
  payment,
}: {
  modelId: string;
  addrs: ModelAddresses;
  view?: WalletModel;
  account: Address;
  chainId: number;
  payment: PaymentToken;
}) {
  const config = useConfig();
  const m = view ?? NO_WORK;
  const chain = useModelChain(addrs, account, m.claim?.epoch);
  const tx = useTx();
  if (chain.error)
    return (
      <p
        className="notice notice-error notice-detail"
        role="alert"
      >{`Cannot read this model’s contracts: ${explainError(chain.error)}`}</p>
    );
  if (!chain.data)
    return (
      <p className="muted" role="status">
        Reading the chain…
      </p>
    );
  const c = chain.data;
  const s = summarize(m, c);
  const sym = payment.symbol ?? 'tokens';
  const dec = payment.decimals ?? 6;
  const now = Math.floor(Date.now() / 1000);

  function claim() {
    const claimProof = m.claim!;
    const amount = s.claimable;
    void tx.run(
      'Claim',
      () =>
        writeContract(config, {
          address: addrs.distributor,
          abi: EpochDistributorAbi,
          functionName: 'claim',
          args: [BigInt(claimProof.epoch), account, BigInt(claimProof.cumulative), claimProof.proof],
          account,
          chainId,
        }),
      () => `Claimed ${formatShares(amount)} shares (epoch ${claimProof.epoch}).`,
    );
  }
  function withdraw(asset: 'eth' | 'token') {
    const amount =
      asset === 'eth' ? formatToken(c.withdrawableEth, 18, 'ETH') : formatToken(c.withdrawableToken, dec, sym);
    void tx.run(
      asset === 'eth' ? 'Withdraw ETH' : `Withdraw ${sym}`,
      () =>
        writeContract(config, {
          address: addrs.vault,
          abi: RevenueVaultAbi,
          functionName: asset === 'eth' ? 'withdrawEth' : 'withdrawToken',
          account,
          chainId,
        }),
      () => `Withdrew ${amount}.`,
    );
  }

  return (
    <>
      <dl className="fields">
        <Field name="Pending" testId="h-pending">
          <Shares units={s.pending} note="in the open epoch, not yet verified" />
        </Field>
        <Field name="Waiting" testId="h-waiting">
          <Shares units={s.waiting} note="verified" />
          {s.waiting > 0n && (
            <span className="holder-sub muted">
              {s.waitingOpensAt === null
                ? 'Claimable after the epoch’s root is posted on chain and its challenge window ends.'
                : `Challenge window: claimable ${formatWhen(s.waitingOpensAt, now)}.`}
            </span>
          )}
        </Field>
        <Field name="Claimable" testId="h-claimable">
          <Shares units={s.claimable} note="verified" />
        </Field>
        <Field name="Claimed" testId="h-claimed">
          <Shares units={s.claimed} note="verified" />
        </Field>
        <Field name="Balance" testId="h-balance">
          <span className="holder-amount">{formatShares(c.balance)}</span> {c.symbol}
          {c.totalSupply > 0n && (
            <span className="holder-sub muted">
              {`${percentOf(c.balance, c.totalSupply)}% of ${formatShares(c.totalSupply)} issued`}
            </span>
          )}
        </Field>
      </dl>
      <div className="controls">
        <button type="button" className="button" disabled={tx.busy || s.claimable === 0n} onClick={claim}>
          Claim {s.claimable > 0n ? `${formatShares(s.claimable)} shares` : 'shares'}
        </button>
      </div>
      <h3>Revenue</h3>
      <dl className="fields">
        <Field name="Yours in ETH" testId="h-wd-eth">
          <span className="holder-amount">{formatEther(c.withdrawableEth)}</span> ETH
        </Field>
        <Field name={`Yours in ${sym}`} testId="h-wd-token">
          <span className="holder-amount">{formatToken(c.withdrawableToken, dec, '').trim()}</span> {sym}
        </Field>
        <Field name="Paid in, all holders" testId="h-deposited">
          {`${formatEther(c.totalEthDeposited)} ETH · ${formatToken(c.totalTokenDeposited, dec, sym)}`}
        </Field>
      </dl>
      <div className="controls">
        <button
          type="button"
          className="button"
          disabled={tx.busy || c.withdrawableEth === 0n}
          onClick={() => withdraw('eth')}
        >
          Withdraw ETH
        </button>
        <button
          type="button"
          className="button"
          disabled={tx.busy || c.withdrawableToken === 0n}
          onClick={() => withdraw('token')}
        >
          Withdraw {sym}
        </button>
      </div>
      <TxStatus status={tx.status} error={tx.error} testId="holder-tx" />
      <h3>Earnings by epoch</h3>
      <EarningsChart modelId={modelId} epochs={m.epochs} claim={m.claim} chain={c} />
    </>
  );
}

/** `part` as a percentage of `whole`, to three significant digits. */
function percentOf(part: bigint, whole: bigint): string {
  return ((Number(part) / Number(whole)) * 100).toPrecision(3);
}
