import { useQueryClient } from '@tanstack/react-query';
import { useEffect, useState } from 'react';
import { getAddress, type Address } from 'viem';
import { useConfig } from 'wagmi';
import { signTypedData } from 'wagmi/actions';
import { explainError } from './errors.ts';
import { api, usePeerBinding, useWalletView } from './hooks.ts';
import { linkPeer } from './link.ts';
import { shortAddress } from './shares.ts';
import { useHolderPeer } from './store.ts';
import { Field, TxStatus } from './ui.tsx';

/**
 * Links this tab's peer (the identity the Volunteer page trains with) to the connected wallet, so the work it
 * does is credited there. Shows whether it is linked, and to which wallet.
 */
export function LinkCard({ address, chainId }: { address: Address; chainId: number }) {
  const peer = useHolderPeer();
  const binding = usePeerBinding(peer.peerId);
  const wallet = useWalletView(address);
  const config = useConfig();
  const queryClient = useQueryClient();
  const [busy, setBusy] = useState(false);
  const [status, setStatus] = useState('');
  const [error, setError] = useState<string>();
  const loadPeer = peer.loadPeer;
  useEffect(() => void loadPeer(), [loadPeer]);

  const b = binding.data;
  const mine = !!b && getAddress(b.wallet) === getAddress(address);
  let state = 'Loading this tab’s peer identity…';
  if (peer.status === 'error') state = peer.error!;
  else if (binding.isPending && peer.peerId) state = 'Checking whether this tab’s peer is linked…';
  else if (binding.error) state = `Cannot tell whether this tab is linked: ${explainError(binding.error)}`;
  else if (mine) state = 'This tab’s peer is linked to your wallet: the work it verifies earns shares here.';
  // The coordinator keeps links permanently (a peer cannot move its past or future work to another wallet).
  else if (b)
    state =
      `This tab’s peer is linked to another wallet (${shortAddress(b.wallet)}): links are permanent, so ` +
      `its work is credited there. Connect that wallet to claim it.`;
  else if (peer.peerId) state = 'This tab’s peer is not linked to a wallet yet: its work earns shares for no one.';

  async function link() {
    if (!peer.key || !peer.peerId) return;
    setBusy(true);
    setError(undefined);
    try {
      await linkPeer({
        api,
        key: peer.key,
        peerId: peer.peerId,
        wallet: address,
        chainId,
        signTypedData: (td) => signTypedData(config, { ...td, account: address }),
        onStep: setStatus,
      });
      await queryClient.invalidateQueries({ queryKey: ['holder', 'binding'] });
      await queryClient.invalidateQueries({ queryKey: ['holder', 'wallet'] });
      setStatus('Linked: this tab’s verified work is now credited to your wallet.');
    } catch (e) {
      setStatus('');
      setError(`Linking failed: ${explainError(e)}`);
    } finally {
      setBusy(false);
    }
  }

  return (
    <section className="card" data-testid="holder-link" aria-labelledby="holder-link-title">
      <div className="card-head">
        <h2 id="holder-link-title">This tab’s peer</h2>
        <span className={mine ? 'pill pill-pass' : 'pill pill-waiting'} data-testid="holder-link-state">
          {mine ? 'Linked' : b ? 'Linked elsewhere' : 'Not linked'}
        </span>
      </div>
      <p data-testid="holder-link-detail">{state}</p>
      <dl className="fields">
        <Field name="Peer id" testId="holder-peer-id">
          {peer.peerId ? <code>{peer.peerId}</code> : '—'}
        </Field>
        {b && (
          <Field name="Linked" testId="holder-link-at">
            {`to ${shortAddress(b.wallet)} on ${new Date(b.at).toLocaleString()}`}
          </Field>
        )}
        <Field name="Your peers" testId="holder-peers">
          {wallet.data ? `${wallet.data.peers.length} linked to this wallet` : '—'}
        </Field>
      </dl>
      <div className="controls">
        {!b && (
          <button
            type="button"
            className="button"
            disabled={busy || !peer.key || binding.isPending}
            onClick={() => void link()}
          >
            Link this tab’s peer
          </button>
        )}
        <p className="muted small">
          Your wallet signs a link naming this tab’s peer; the peer countersigns it with its own key. It is sent to the
          coordinator, not to the chain, and costs no gas. A link is permanent.
        </p>
      </div>
      <TxStatus status={status} error={error} testId="holder-link" />
    </section>
  );
}
