/**
 * Paid API requests are signed by the requester's Ethereum key, so nobody spends another's deposit: an
 * EIP-191 personal-sign over the method, path, a nonce (strictly increasing per requester: replays and
 * reordered copies are refused) and the SHA-256 of the body. Three headers carry it; any HTTP client works —
 * `signedFetch` wraps fetch for clients that take one (the official `openai` client does).
 */
import { getAddress, isAddress, recoverMessageAddress, sha256, type Address, type Hex } from 'viem';
import { TesseraError } from '../errors.ts';

export const AUTH_HEADERS = {
  address: 'x-tessera-address',
  nonce: 'x-tessera-nonce',
  signature: 'x-tessera-signature',
} as const;

export function requestMessage(method: string, path: string, nonce: bigint, body: Uint8Array): string {
  return `tessera-request-v1\n${method.toUpperCase()} ${path}\n${nonce}\n${sha256(body)}`;
}

/** Anything that signs EIP-191 messages: a viem account, a wallet client bound to an account. */
export interface MessageSigner {
  address: Address;
  signMessage(args: { message: string }): Promise<Hex>;
}

export async function signRequest(
  signer: MessageSigner,
  method: string,
  path: string,
  body: Uint8Array,
  nonce: bigint,
): Promise<Record<string, string>> {
  const signature = await signer.signMessage({ message: requestMessage(method, path, nonce, body) });
  return {
    [AUTH_HEADERS.address]: signer.address,
    [AUTH_HEADERS.nonce]: String(nonce),
    [AUTH_HEADERS.signature]: signature,
  };
}

/** fetch that signs every request (nonce = a strictly increasing microsecond clock). */
export function signedFetch(signer: MessageSigner, base: typeof fetch = fetch): typeof fetch {
  let last = 0n;
  return async (input, init = {}) => {
    const req = new Request(input, init);
    const body = new Uint8Array(await req.clone().arrayBuffer());
    const now = BigInt(Date.now()) * 1000n;
    last = now > last ? now : last + 1n;
    const url = new URL(req.url);
    const headers = new Headers(req.headers);
    for (const [k, v] of Object.entries(await signRequest(signer, req.method, url.pathname, body, last)))
      headers.set(k, v);
    return base(req.url, {
      method: req.method,
      headers,
      body: req.method === 'GET' || req.method === 'HEAD' ? undefined : body,
      signal: req.signal,
    });
  };
}

export class RequestAuthError extends TesseraError {
  constructor(message: string, options?: ErrorOptions) {
    super('request-auth', message, options);
  }
}

/** The signer of a request, or RequestAuthError with why not. (Nonce freshness is the server's to check.) */
export async function verifyRequest(
  headers: Record<string, string | string[] | undefined>,
  method: string,
  path: string,
  body: Uint8Array,
): Promise<{ address: Address; nonce: bigint }> {
  const one = (k: string) => {
    const v = headers[k];
    if (typeof v !== 'string' || v === '')
      throw new RequestAuthError(`missing ${k} header: paid requests are signed by the requester's key`);
    return v;
  };
  const address = one(AUTH_HEADERS.address);
  const nonceRaw = one(AUTH_HEADERS.nonce);
  const signature = one(AUTH_HEADERS.signature);
  if (!isAddress(address)) throw new RequestAuthError(`${AUTH_HEADERS.address} is not an address`);
  if (!/^\d{1,30}$/.test(nonceRaw)) throw new RequestAuthError(`${AUTH_HEADERS.nonce} must be a decimal integer`);
  if (!/^0x[0-9a-fA-F]{130}$/.test(signature))
    throw new RequestAuthError(`${AUTH_HEADERS.signature} must be a 65-byte 0x hex signature`);
  const nonce = BigInt(nonceRaw);
  let signer: Address;
  try {
    signer = await recoverMessageAddress({
      message: requestMessage(method, path, nonce, body),
      signature: signature as Hex,
    });
  } catch {
    throw new RequestAuthError('the signature does not recover');
  }
  if (getAddress(signer) !== getAddress(address))
    throw new RequestAuthError(`the request is signed by ${signer}, not ${getAddress(address)}`);
  return { address: getAddress(address), nonce };
}
