/**
 * The prompt box's request: POST /v1/completions with `stream: true`, signed by the connected wallet exactly as
 * src/ledger/request-auth.ts specifies (its signedFetch: EIP-191 over method, path, nonce and the body's hash),
 * read back as server-sent events chunk by chunk.
 */
import { formatEther } from 'viem';
import { TesseraError } from '../../errors.ts';
import { signedFetch, type MessageSigner } from '../../ledger/request-auth.ts';
import { readSse } from '../sse.ts';

export interface PromptRequest {
  model: string;
  prompt: string;
  maxTokens: number;
  temperature: number;
  seed?: number;
}

export interface PromptUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export type PromptPiece = { text: string } | { usage: PromptUsage } | { finish: string };

/** A refused or failed request, with a sentence for the page and the HTTP status. */
export class PromptError extends TesseraError {
  readonly status: number;
  constructor(message: string, status: number) {
    super('prompt', message);
    this.status = status;
  }
}

export function completionBody(r: PromptRequest): Record<string, unknown> {
  return {
    model: r.model,
    prompt: r.prompt,
    max_tokens: r.maxTokens,
    temperature: r.temperature,
    ...(r.seed !== undefined ? { seed: r.seed } : {}),
    stream: true,
    stream_options: { include_usage: true },
  };
}

/** What an error answer means to the person at the prompt box. */
export function explainPromptError(status: number, message: string): string {
  if (status === 402)
    return (
      `Your balance does not cover this request: ${message} Deposit more with the button above, or ask ` +
      `for fewer tokens.`
    );
  if (status === 401) return `The coordinator refused the signature: ${message}`;
  if (status === 404) return `Unknown model: ${message}`;
  if (status === 503) return `No one can serve this model right now (nothing was charged): ${message}`;
  if (status === 400) return `The request was refused: ${message}`;
  return `The coordinator answered ${status}: ${message}`;
}

// One signing fetch per wallet (and underlying fetch): its nonce clock only moves forward, which the
// coordinator requires per address, even for two requests within one millisecond.
const fetchers = new WeakMap<typeof fetch, Map<string, typeof fetch>>();

function fetcherFor(signer: MessageSigner, base: typeof fetch): typeof fetch {
  let perWallet = fetchers.get(base);
  if (!perWallet) fetchers.set(base, (perWallet = new Map()));
  const key = signer.address.toLowerCase();
  let f = perWallet.get(key);
  if (!f) perWallet.set(key, (f = signedFetch(signer, base)));
  return f;
}

/**
 * Streams the completion's pieces: text as each token arrives, then the usage, then the finish reason.
 * `url` is absolute in tests; the page passes its own origin's /v1/completions.
 */
export async function* streamCompletion(
  r: PromptRequest,
  signer: MessageSigner,
  o: { url: string; fetcher?: typeof fetch; signal?: AbortSignal },
): AsyncGenerator<PromptPiece> {
  const f = fetcherFor(signer, o.fetcher ?? fetch);
  let res: Response;
  try {
    res = await f(o.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(completionBody(r)),
      signal: o.signal,
    });
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    throw new PromptError(`Cannot reach the coordinator: ${(e as Error).message}`, 0);
  }
  if (!res.ok || !res.body) {
    const body = (await res.json().catch(() => undefined)) as { error?: { message?: string } | string } | undefined;
    const message = typeof body?.error === 'string' ? body.error : (body?.error?.message ?? res.statusText);
    throw new PromptError(explainPromptError(res.status, message), res.status);
  }
  for await (const e of readSse(res.body, o.signal)) {
    if (e.data === '[DONE]') return;
    let chunk: {
      choices?: Array<{ text?: string; finish_reason?: string | null }>;
      usage?: PromptUsage | null;
      error?: { message?: string };
    };
    try {
      chunk = JSON.parse(e.data);
    } catch {
      throw new PromptError(`The stream sent something that is not JSON: ${e.data.slice(0, 80)}`, res.status);
    }
    if (chunk.error)
      throw new PromptError(`Generation failed mid-stream: ${chunk.error.message ?? 'unknown error'}`, 500);
    const c = chunk.choices?.[0];
    if (c?.text) yield { text: c.text };
    if (c?.finish_reason) yield { finish: c.finish_reason };
    if (chunk.usage) yield { usage: chunk.usage };
  }
  throw new PromptError(
    'The stream ended before [DONE]: the coordinator stopped answering mid-generation.',
    res.status,
  );
}

/** Wei (decimal string) → "0.0012 ETH"; exact, no rounding. */
export function formatWei(wei: string | bigint): string {
  return `${formatEther(typeof wei === 'bigint' ? wei : BigInt(wei))} ETH`;
}
