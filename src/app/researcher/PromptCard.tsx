import { useQuery } from '@tanstack/react-query';
import { useId, useMemo, useRef, useState, type FormEvent, type ReactNode } from 'react';
import { parseEther, type Address, type Chain } from 'viem';
import { useConfig, useConnection, WagmiProvider } from 'wagmi';
import { signMessage, writeContract } from 'wagmi/actions';
import { InferenceEscrowAbi } from '../../chain/artifacts.ts';
import type { Deployment } from '../../chain/deployment.ts';
import type { MessageSigner } from '../../ledger/request-auth.ts';
import { api, type ModelSummary } from '../coordinator-api.ts';
import { explainError } from '../holder/errors.ts';
import { useChainInfo, useTx } from '../holder/hooks.ts';
import { Field, TxStatus } from '../holder/ui.tsx';
import { holderWagmiConfig } from '../holder/wagmi.ts';
import { WalletCard } from '../holder/WalletCard.tsx';
import { formatWei, PromptError, streamCompletion, type PromptUsage } from './prompt.ts';

/**
 * Prompt any model and watch the tokens stream from the swarm: requests are paid from the connected wallet's
 * escrow deposit and signed by that wallet (wagmi's signMessage behind request-auth's signing). Needs the
 * coordinator's chain (GET /api/chain) for the escrow; without one, says so.
 */
export function PromptCard({ models, modelId }: { models: ModelSummary[]; modelId?: string }) {
  const info = useChainInfo();
  const d = info.data;
  const key = d ? `${d.chainId} ${d.rpcUrl}` : '';
  // Rebuilt only if the coordinator's chain changes, never per render: a new config would drop the connection.
  // biome-ignore lint/correctness/useExhaustiveDependencies: keyed by the chain's identity on purpose
  const wagmi = useMemo(() => (d ? holderWagmiConfig(d) : undefined), [key]);
  let body: ReactNode;
  if (info.isPending)
    body = (
      <p className="muted" role="status">
        Reading the chain settings…
      </p>
    );
  else if (info.error)
    body = (
      <p className="notice notice-error notice-detail" role="alert">
        {`Cannot read the chain settings from the coordinator: ${explainError(info.error)}`}
      </p>
    );
  else if (!d || !wagmi)
    body = (
      <p data-testid="prompt-no-chain">
        This coordinator is not connected to a blockchain, so it serves no paid inference: prompts are paid from an
        escrow deposit on chain. Ask the operator to configure one.
      </p>
    );
  return (
    <section className="card" aria-labelledby="prompt-title" data-testid="research-prompt">
      <h2 id="prompt-title">Prompt a model</h2>
      <p className="muted small">
        Generation runs through the peers that hold the model’s stages; each token streams back as it is sampled.
        Requests are signed by your wallet and paid per 1,000 tokens from your deposit.
      </p>
      {body ?? (
        <WagmiProvider config={wagmi!.config}>
          <Connected d={d!} chain={wagmi!.chain} models={models} modelId={modelId} />
        </WagmiProvider>
      )}
    </section>
  );
}

function Connected({
  d,
  chain,
  models,
  modelId,
}: {
  d: Deployment;
  chain: Chain;
  models: ModelSummary[];
  modelId?: string;
}) {
  const conn = useConnection();
  const ready = conn.status === 'connected' && conn.chainId === chain.id && !!conn.address;
  // wagmi passes through a reconnect for a moment now and then (seen as a prompt finished streaming): the form
  // stays mounted (hidden while not ready) so its answer survives; another account gets a fresh form.
  const [account, setAccount] = useState<Address>();
  if (ready && conn.address !== account) setAccount(conn.address);
  return (
    <div className="prompt-inner">
      <WalletCard chain={chain} />
      {account && (
        <div key={account} className="prompt-inner" style={ready ? undefined : { display: 'none' }}>
          <Balance d={d} account={account} chainId={chain.id} />
          <PromptForm account={account} models={models} modelId={modelId} />
        </div>
      )}
      {!ready && <p className="muted">Connect your wallet (on {chain.name}) to see your balance and send prompts.</p>}
    </div>
  );
}

function Balance({ d, account, chainId }: { d: Deployment; account: Address; chainId: number }) {
  const config = useConfig();
  const payer = useQuery({
    queryKey: ['research', 'payer', account],
    queryFn: () => api.payer(account),
    refetchInterval: 10_000,
  });
  const tx = useTx();
  const [amount, setAmount] = useState('0.01');
  const id = useId();
  const escrow = d.escrow;
  let value: bigint | undefined;
  try {
    value = parseEther(amount.trim());
  } catch {
    value = undefined;
  }
  const valid = value !== undefined && value > 0n;
  const deposit = (e: FormEvent) => {
    e.preventDefault();
    if (!escrow || !valid) return;
    void tx.run(
      'Deposit',
      () =>
        writeContract(config, {
          address: escrow,
          abi: InferenceEscrowAbi,
          functionName: 'deposit',
          value,
          account,
          chainId,
        }),
      () => `Deposited ${amount.trim()} ETH into the inference escrow.`,
    );
  };
  return (
    <div className="prompt-balance" data-testid="prompt-balance">
      <h3>Your balance</h3>
      {payer.error && (
        <p className="notice notice-error notice-detail" role="alert">
          {`Cannot read your balance: ${explainError(payer.error)}`}
        </p>
      )}
      {payer.data && (
        <dl className="fields">
          <Field name="Available" testId="prompt-available">
            {formatWei(payer.data.available)}
          </Field>
          <Field name="Deposited" testId="prompt-deposit">
            {formatWei(payer.data.deposit)}
          </Field>
          <Field name="Used, not yet charged" testId="prompt-uncharged">
            {formatWei(payer.data.uncharged)}
          </Field>
        </dl>
      )}
      {escrow ? (
        <form className="controls" onSubmit={deposit}>
          <label htmlFor={`${id}-amount`}>Amount (ETH)</label>
          <input
            id={`${id}-amount`}
            className="input-short"
            inputMode="decimal"
            value={amount}
            onChange={(e) => setAmount(e.target.value)}
            aria-invalid={valid ? undefined : true}
          />
          <button type="submit" className="button" disabled={tx.busy || !valid}>
            Deposit
          </button>
        </form>
      ) : (
        <p className="muted">This chain has no inference escrow deployed, so there is nothing to deposit into.</p>
      )}
      <TxStatus status={tx.status} error={tx.error} testId="prompt-deposit" />
    </div>
  );
}

function PromptForm({ account, models, modelId }: { account: Address; models: ModelSummary[]; modelId?: string }) {
  const config = useConfig();
  const id = useId();
  const [model, setModel] = useState(modelId ?? models[0]?.id ?? '');
  const [prompt, setPrompt] = useState('The jury said');
  const [maxTokens, setMaxTokens] = useState('32');
  const [temperature, setTemperature] = useState('0.8');
  const [output, setOutput] = useState('');
  const [status, setStatus] = useState('');
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const abort = useRef<AbortController | undefined>(undefined);
  const chosen = models.find((m) => m.id === model) ?? models[0];

  async function send(e: FormEvent) {
    e.preventDefault();
    if (!chosen || busy) return;
    const max = Number(maxTokens);
    const temp = Number(temperature);
    if (!Number.isInteger(max) || max < 1 || max > 1024)
      return setError('Max tokens must be a whole number from 1 to 1024.');
    if (!Number.isFinite(temp) || temp < 0 || temp > 2) return setError('Temperature must be between 0 and 2.');
    if (prompt.trim() === '') return setError('Type a prompt first.');
    setError(undefined);
    setOutput('');
    setBusy(true);
    setStatus('Sign the request in your wallet…');
    const signer: MessageSigner = {
      address: account,
      signMessage: ({ message }) => signMessage(config, { account, message }),
    };
    abort.current = new AbortController();
    let tokens = 0;
    let usage: PromptUsage | undefined;
    try {
      for await (const piece of streamCompletion(
        { model: chosen.id, prompt, maxTokens: max, temperature: temp },
        signer,
        { url: `${location.origin}/v1/completions`, signal: abort.current.signal },
      )) {
        if ('text' in piece) {
          tokens++;
          setOutput((o) => o + piece.text);
          setStatus(`Streaming from the swarm… ${tokens} token${tokens === 1 ? '' : 's'}`);
        } else if ('usage' in piece) usage = piece.usage;
      }
      const cost = usage
        ? ` · ${usage.prompt_tokens} prompt + ${usage.completion_tokens} generated tokens at ` +
          `${chosen.pricePer1kTokens} ETH per 1,000`
        : '';
      setStatus(`Done${cost}.`);
    } catch (err) {
      if ((err as Error).name === 'AbortError') setStatus(`Stopped after ${tokens} tokens.`);
      else {
        setStatus('');
        setError(err instanceof PromptError ? err.message : `The request failed: ${explainError(err)}`);
      }
    } finally {
      setBusy(false);
      abort.current = undefined;
    }
  }

  if (models.length === 0) return <p className="muted">No models are registered yet: propose one below.</p>;
  return (
    <form className="prompt-form" onSubmit={(e) => void send(e)} noValidate>
      <h3>Prompt</h3>
      <div className="form-grid">
        <div className="form-field">
          <label htmlFor={`${id}-model`}>Model</label>
          <select id={`${id}-model`} value={chosen?.id} onChange={(e) => setModel(e.target.value)}>
            {models.map((m) => (
              <option key={m.id} value={m.id}>
                {m.name} ({m.id}) · {m.pricePer1kTokens} ETH / 1k tokens
              </option>
            ))}
          </select>
        </div>
        <div className="form-field">
          <label htmlFor={`${id}-max`}>Max tokens</label>
          <input
            id={`${id}-max`}
            inputMode="numeric"
            value={maxTokens}
            onChange={(e) => setMaxTokens(e.target.value)}
          />
        </div>
        <div className="form-field">
          <label htmlFor={`${id}-temp`}>Temperature</label>
          <input
            id={`${id}-temp`}
            inputMode="decimal"
            value={temperature}
            onChange={(e) => setTemperature(e.target.value)}
          />
        </div>
      </div>
      <div className="form-field">
        <label htmlFor={`${id}-prompt`}>Prompt</label>
        <textarea id={`${id}-prompt`} rows={3} value={prompt} onChange={(e) => setPrompt(e.target.value)} />
      </div>
      <div className="controls">
        <button type="submit" className="button" disabled={busy}>
          Send
        </button>
        {busy && (
          <button type="button" className="button button-quiet" onClick={() => abort.current?.abort()}>
            Stop
          </button>
        )}
      </div>
      <TxStatus status={status} error={error} testId="prompt" />
      <output className="prompt-output" htmlFor={`${id}-prompt`} data-testid="prompt-output" aria-live="off">
        {output && (
          <>
            <span className="muted">{prompt}</span>
            {output}
          </>
        )}
      </output>
    </form>
  );
}
