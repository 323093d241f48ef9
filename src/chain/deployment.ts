/** Browser-safe: the shape of a Tessera deployment (addresses on one chain) and its validation. */
import { getAddress, isAddress, type Address } from 'viem';

export type ModelAddresses = { token: Address; vault: Address; distributor: Address };

export type Deployment = {
  rpcUrl: string;
  chainId: number;
  registry: Address;
  paymentToken: Address;
  models: Record<string, ModelAddresses>;
  /** Defaults for registerModelOnChain, recorded by deployTessera. */
  settler?: Address;
  challengeDelaySeconds?: number;
  /** Block of the registry's deployment: where log scans can start. */
  deployBlock?: number;
  /** The InferenceEscrow requesters deposit into (absent in deployments from before inference). */
  escrow?: Address;
};

/** Checks every field of a parsed deployment JSON; throws naming the first bad field and the source. */
export function parseDeployment(json: unknown, source = 'deployment'): Deployment {
  const fail = (what: string): never => {
    throw new Error(`malformed ${source}: ${what}`);
  };
  const obj = (v: unknown, what: string) =>
    typeof v === 'object' && v !== null && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : fail(`${what} is not an object`);
  const addr = (v: unknown, what: string): Address =>
    typeof v === 'string' && isAddress(v, { strict: false })
      ? getAddress(v)
      : fail(`${what} is not an address (${JSON.stringify(v)})`);
  const d = obj(json, 'top level');
  if (typeof d.rpcUrl !== 'string' || !/^https?:\/\//.test(d.rpcUrl))
    fail(`rpcUrl is not an http(s) URL (${JSON.stringify(d.rpcUrl)})`);
  if (!Number.isSafeInteger(d.chainId) || (d.chainId as number) <= 0)
    fail(`chainId is not a positive integer (${JSON.stringify(d.chainId)})`);
  const models: Record<string, ModelAddresses> = {};
  for (const [id, m] of Object.entries(obj(d.models, 'models'))) {
    const mm = obj(m, `models.${id}`);
    models[id] = {
      token: addr(mm.token, `models.${id}.token`),
      vault: addr(mm.vault, `models.${id}.vault`),
      distributor: addr(mm.distributor, `models.${id}.distributor`),
    };
  }
  const out: Deployment = {
    rpcUrl: d.rpcUrl as string,
    chainId: d.chainId as number,
    registry: addr(d.registry, 'registry'),
    paymentToken: addr(d.paymentToken, 'paymentToken'),
    models,
  };
  if (d.settler !== undefined) out.settler = addr(d.settler, 'settler');
  if (d.challengeDelaySeconds !== undefined) {
    if (!Number.isSafeInteger(d.challengeDelaySeconds) || (d.challengeDelaySeconds as number) < 0)
      fail('challengeDelaySeconds is not a non-negative integer');
    out.challengeDelaySeconds = d.challengeDelaySeconds as number;
  }
  if (d.escrow !== undefined) out.escrow = addr(d.escrow, 'escrow');
  if (d.deployBlock !== undefined) {
    if (!Number.isSafeInteger(d.deployBlock) || (d.deployBlock as number) < 0)
      fail('deployBlock is not a non-negative integer');
    out.deployBlock = d.deployBlock as number;
  }
  return out;
}
