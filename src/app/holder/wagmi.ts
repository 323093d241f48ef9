/**
 * wagmi is configured at run time from GET /api/chain: the chain id and RPC URL are the coordinator's, not
 * the build's, so one build serves a local anvil and a public chain alike.
 */
import { createConfig, http, type Config } from 'wagmi';
import { injected } from 'wagmi/connectors/injected';
import { defineChain, type Chain } from 'viem';
import type { Deployment } from '../../chain/deployment.ts';

const KNOWN_NAMES: Record<number, string> = {
  1: 'Ethereum',
  10: 'OP Mainnet',
  8453: 'Base',
  31337: 'Local chain (anvil)',
  11155111: 'Sepolia',
};

export function chainName(id: number): string {
  return KNOWN_NAMES[id] ?? `Chain ${id}`;
}

export function tesseraChain(d: Pick<Deployment, 'chainId' | 'rpcUrl'>): Chain {
  return defineChain({
    id: d.chainId,
    name: chainName(d.chainId),
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    // The wallet gets this URL too if it has to add the chain (wallet_addEthereumChain on switchChain).
    rpcUrls: { default: { http: [d.rpcUrl] } },
  });
}

export function holderWagmiConfig(d: Pick<Deployment, 'chainId' | 'rpcUrl'>): { config: Config; chain: Chain } {
  const chain = tesseraChain(d);
  const config = createConfig({
    chains: [chain],
    // One injected connector (window.ethereum: MetaMask and the like). EIP-6963 discovery would add one
    // connector per installed wallet; a single "Connect wallet" button is what this page offers.
    connectors: [injected()],
    multiInjectedProviderDiscovery: false,
    transports: { [chain.id]: http(d.rpcUrl) },
  });
  return { config, chain };
}
