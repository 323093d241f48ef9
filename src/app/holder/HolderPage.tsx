import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { useMemo } from 'react';
import type { Address, Chain } from 'viem';
import { useConnection, WagmiProvider } from 'wagmi';
import type { Deployment } from '../../chain/deployment.ts';
import { explainError } from './errors.ts';
import { useChainInfo, usePaymentToken, useWalletView } from './hooks.ts';
import { LinkCard } from './LinkCard.tsx';
import { ModelCard } from './ModelCard.tsx';
import { holderWagmiConfig } from './wagmi.ts';
import { WalletCard } from './WalletCard.tsx';

// One client for the page's life: wagmi's reads and the ledger's answers share its cache.
const queryClient = new QueryClient({ defaultOptions: { queries: { refetchOnWindowFocus: false } } });

export function HolderPage() {
  return (
    <>
      <p className="lead">
        Verified training work earns ownership shares of the model it trained: one share per 10<sup>18</sup> FLOP. Link
        this tab to your wallet, claim the shares on chain, and withdraw your part of the model’s revenue.
      </p>
      <QueryClientProvider client={queryClient}>
        <ChainGate />
      </QueryClientProvider>
    </>
  );
}

function ChainGate() {
  const info = useChainInfo();
  const d = info.data;
  // Rebuilt only if the coordinator's chain changes, never per render: a new config would drop the connection.
  const key = d ? `${d.chainId} ${d.rpcUrl}` : '';
  // biome-ignore lint/correctness/useExhaustiveDependencies: keyed by the chain's identity on purpose (see above)
  const wagmi = useMemo(() => (d ? holderWagmiConfig(d) : undefined), [key]);
  if (info.isPending)
    return (
      <p className="detecting" role="status">
        <span className="spinner" aria-hidden="true" /> Reading the chain settings…
      </p>
    );
  if (info.error)
    return (
      <p className="notice notice-error notice-detail" role="alert" data-testid="holder-chain-error">
        {`Cannot read the chain settings from the coordinator: ${explainError(info.error)}`}
      </p>
    );
  if (!d || !wagmi)
    return (
      <section className="card" data-testid="holder-no-chain">
        <h2>No chain configured</h2>
        <p role="status">
          This coordinator is not connected to a blockchain, so there are no shares to link, claim or withdraw here.
          Training still works; ask the operator to configure a chain to make the work count for ownership.
        </p>
      </section>
    );
  return (
    <WagmiProvider config={wagmi.config}>
      <Dashboard d={d} chain={wagmi.chain} />
    </WagmiProvider>
  );
}

function Dashboard({ d, chain }: { d: Deployment; chain: Chain }) {
  const conn = useConnection();
  const ready = conn.status === 'connected' && conn.chainId === chain.id;
  return (
    <div className="grid grid-single holder">
      <WalletCard chain={chain} />
      {ready && conn.address && (
        <>
          <LinkCard address={conn.address} chainId={chain.id} />
          <Models d={d} account={conn.address} chainId={chain.id} />
        </>
      )}
    </div>
  );
}

function Models({ d, account, chainId }: { d: Deployment; account: Address; chainId: number }) {
  const view = useWalletView(account);
  const payment = usePaymentToken(d.paymentToken);
  if (view.error)
    return (
      <p className="notice notice-error notice-detail" role="alert">
        {`Cannot read your shares from the coordinator: ${explainError(view.error)}`}
      </p>
    );
  if (!view.data)
    return (
      <p className="detecting" role="status">
        <span className="spinner" aria-hidden="true" /> Reading your shares…
      </p>
    );
  // Models on chain, plus any the ledger credits that are not registered yet (shown, not claimable).
  const ids = [...new Set([...Object.keys(d.models), ...view.data.models.map((m) => m.modelId)])].sort();
  if (ids.length === 0) return <p className="muted">No models are registered on this chain yet.</p>;
  return (
    <>
      {ids.map((id) => (
        <ModelCard
          key={id}
          modelId={id}
          addrs={d.models[id]}
          view={view.data.models.find((m) => m.modelId === id)}
          account={account}
          chainId={chainId}
          payment={{ symbol: payment.symbol, decimals: payment.decimals }}
        />
      ))}
    </>
  );
}
