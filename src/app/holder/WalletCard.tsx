import type { Chain } from 'viem';
import { useConnect, useConnection, useConnectors, useDisconnect, useSwitchChain } from 'wagmi';
import { explainError } from './errors.ts';
import { shortAddress } from './shares.ts';
import { Field } from './ui.tsx';
import { chainName } from './wagmi.ts';

/** Connect (injected wallet), who is connected, on which chain; offers the switch when it is the wrong one. */
export function WalletCard({ chain }: { chain: Chain }) {
  const conn = useConnection();
  const connectors = useConnectors();
  const connect = useConnect();
  const disconnect = useDisconnect();
  const switchChain = useSwitchChain();
  // MetaMask and its kind inject window.ethereum before the page's scripts run.
  const hasWallet = typeof window !== 'undefined' && 'ethereum' in window;
  const connected = conn.status === 'connected';
  const wrongChain = connected && conn.chainId !== chain.id;
  const error = connect.error ?? switchChain.error ?? disconnect.error;
  let status = 'Not connected.';
  if (conn.status === 'connecting' || conn.status === 'reconnecting') status = 'Connecting to your wallet…';
  else if (switchChain.isPending) status = `Switching your wallet to ${chain.name}…`;
  else if (wrongChain)
    status =
      `Your wallet is on ${chainName(conn.chainId!)}; Tessera's shares live on ${chain.name} (chain ` + `${chain.id}).`;
  else if (connected) status = `Connected to ${chain.name}.`;

  return (
    <section className="card" data-testid="holder-wallet" aria-labelledby="holder-wallet-title">
      <div className="card-head">
        <h2 id="holder-wallet-title">Wallet</h2>
        <span
          className={connected && !wrongChain ? 'pill pill-pass' : 'pill pill-waiting'}
          data-testid="holder-wallet-state"
        >
          {connected ? (wrongChain ? 'Wrong chain' : 'Connected') : 'Not connected'}
        </span>
      </div>
      <p className="holder-status" role="status" aria-live="polite" data-testid="holder-wallet-status">
        {status}
      </p>
      {error && (
        <p className="notice notice-error notice-detail" role="alert">
          {explainError(error)}
        </p>
      )}
      {connected ? (
        <dl className="fields">
          <Field name="Address" testId="holder-address">
            <code title={conn.address}>{shortAddress(conn.address)}</code>
          </Field>
          <Field name="Chain" testId="holder-chain">
            {chainName(conn.chainId)} <span className="muted">(id {conn.chainId})</span>
          </Field>
        </dl>
      ) : (
        !hasWallet && (
          <p id="holder-no-wallet" className="muted small">
            No browser wallet found in this tab. Install MetaMask (or another Ethereum wallet extension) and reload.
          </p>
        )
      )}
      <div className="controls">
        {!connected && (
          <button
            type="button"
            className="button"
            disabled={connect.isPending || conn.status === 'connecting' || !hasWallet || connectors.length === 0}
            aria-describedby={hasWallet ? undefined : 'holder-no-wallet'}
            onClick={() => connect.mutate({ connector: connectors[0] })}
          >
            Connect wallet
          </button>
        )}
        {wrongChain && (
          <button
            type="button"
            className="button"
            disabled={switchChain.isPending}
            onClick={() => switchChain.mutate({ chainId: chain.id })}
          >
            Switch to {chain.name}
          </button>
        )}
        {connected && (
          <button type="button" className="button button-quiet" onClick={() => disconnect.mutate()}>
            Disconnect
          </button>
        )}
      </div>
    </section>
  );
}
