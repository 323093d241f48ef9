/**
 * The coordinator's ledger API as the Holder page sees it (same origin: the app proxies /api). Responses are
 * checked where a wrong shape would show wrong money (decimal strings, addresses); everything else is trusted.
 */
import { ApiError, jsonClient } from '../http.ts';
import { getAddress, isAddress, type Address, type Hex } from 'viem';
import { parseDeployment, type Deployment } from '../../chain/deployment.ts';
import type { SignedBinding } from '../../ledger/binding.ts';

/** Re-exported: callers of this client catch its errors. */
export { ApiError };

export type EpochStatus = 'no-root' | 'pending-chain' | 'challenge' | 'claimable' | 'revoked';

export interface EpochEntry {
  epoch: number;
  /** Shares earned in this epoch, base units (decimal string). */
  shares: string;
  /** The wallet's cumulative shares up to this epoch: the amount in its Merkle leaf. */
  cumulative: string;
  status: EpochStatus;
  /** Unix seconds when the challenge window ends; null until the root is on chain. */
  claimableAt: number | null;
  root: string;
}

export interface ClaimProof {
  epoch: number;
  cumulative: string;
  proof: Hex[];
}

export interface WalletModel {
  modelId: string;
  /** FLOPs in the open epoch, not yet verified (1 share = 1e18 FLOP = 1e18 base units: 1 FLOP per unit). */
  pendingFlops: number;
  epochs: EpochEntry[];
  claim: ClaimProof | null;
}

export interface WalletView {
  wallet: Address;
  peers: string[];
  models: WalletModel[];
}

export interface NonceAnswer {
  wallet: Address;
  nonce: string;
  chainId: number;
  maxExpirySeconds: number;
}

export interface Binding {
  peerId: string;
  wallet: Address;
  /** Milliseconds since the epoch. */
  at: number;
}

const DECIMAL = /^\d+$/;

function decimal(v: unknown, what: string): string {
  if (typeof v !== 'string' || !DECIMAL.test(v))
    throw new ApiError(`${what} is not a decimal string (${JSON.stringify(v)})`, 200);
  return v;
}

function address(v: unknown, what: string): Address {
  if (typeof v !== 'string' || !isAddress(v, { strict: false }))
    throw new ApiError(`${what} is not an address (${JSON.stringify(v)})`, 200);
  return getAddress(v);
}

export function parseWalletView(json: unknown): WalletView {
  const j = json as WalletView;
  if (!j || !Array.isArray(j.models) || !Array.isArray(j.peers))
    throw new ApiError('wallet view lacks models or peers', 200);
  return {
    wallet: address(j.wallet, 'wallet'),
    peers: j.peers.map(String),
    models: j.models.map((m) => ({
      modelId: String(m.modelId),
      pendingFlops: Number.isFinite(m.pendingFlops) && m.pendingFlops > 0 ? m.pendingFlops : 0,
      epochs: (m.epochs ?? []).map((e) => ({
        ...e,
        shares: decimal(e.shares, `${m.modelId} epoch ${e.epoch} shares`),
        cumulative: decimal(e.cumulative, `${m.modelId} epoch ${e.epoch} cumulative`),
      })),
      claim: m.claim ? { ...m.claim, cumulative: decimal(m.claim.cumulative, `${m.modelId} claim cumulative`) } : null,
    })),
  };
}

export interface HolderApi {
  chain(): Promise<Deployment | null>;
  wallet(address: Address): Promise<WalletView>;
  nonce(address: Address): Promise<NonceAnswer>;
  bind(body: SignedBinding): Promise<Binding>;
  peerBinding(peerId: string): Promise<Binding | null>;
}

/** `fetcher` and `base` are for tests; the page uses the global fetch, same origin. */
export function holderApi(fetcher: typeof fetch = (...a) => fetch(...a), base = ''): HolderApi {
  const { call, post } = jsonClient(fetcher, base);
  return {
    async chain() {
      const { chain } = await call<{ chain: unknown }>('/api/chain');
      return chain === null || chain === undefined ? null : parseDeployment(chain, '/api/chain');
    },
    async wallet(a) {
      return parseWalletView(await call<unknown>(`/api/wallets/${a}`));
    },
    async nonce(a) {
      const n = await call<NonceAnswer>(`/api/wallets/${a}/nonce`);
      return { ...n, wallet: address(n.wallet, 'nonce wallet'), nonce: decimal(n.nonce, 'nonce') };
    },
    async bind(body) {
      const { binding } = await call<{ binding: Binding }>('/api/bindings', post(body));
      return binding;
    },
    async peerBinding(peerId) {
      const { binding } = await call<{ binding: Binding | null }>(`/api/peers/${encodeURIComponent(peerId)}/binding`);
      return binding;
    },
  };
}
