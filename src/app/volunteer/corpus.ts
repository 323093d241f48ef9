/**
 * The tab's training data: the coordinator serves the Brown corpus (src/coordinator/API.md, "GET /api/data/brown")
 * because a browser cannot read node_modules. Same tokenizer file and the same token stream `encodeCorpus`
 * makes in Node, so a tab samples exactly the batches a Node worker would.
 */
import { CorpusError } from '../../data/errors.ts';
import { Tokenizer } from '../../data/tokenizer.ts';
import type { Corpus } from '../../train/recipe.ts';

async function fetchOk(url: string): Promise<Response> {
  const res = await fetch(url);
  if (!res.ok) {
    let reason = res.statusText;
    try {
      reason = ((await res.json()) as { error?: string }).error ?? reason;
    } catch {
      // not a JSON error body: keep the status text
    }
    throw new CorpusError(`GET ${url}: ${res.status} ${reason}`);
  }
  return res;
}

/** Raw little-endian Uint16 ids → Int32Array, each checked against the vocabulary. */
export function decodeTokenStream(bytes: ArrayBuffer, vocab: number, what: string): Int32Array {
  if (bytes.byteLength % 2 !== 0)
    throw new CorpusError(`${what}: ${bytes.byteLength} bytes is not a whole number of Uint16 tokens`);
  const view = new DataView(bytes);
  const ids = new Int32Array(bytes.byteLength / 2);
  for (let i = 0; i < ids.length; i++) {
    const id = view.getUint16(2 * i, true);
    if (id >= vocab)
      throw new CorpusError(`${what}: token ${id} at position ${i} is outside the ${vocab}-token vocabulary`);
    ids[i] = id;
  }
  return ids;
}

/** Tokenizer and both splits for `vocab`, from the coordinator at `base` (same origin by default). */
export async function fetchCorpus(vocab: number, base = ''): Promise<Corpus> {
  const root = `${base}/api/data/brown/${vocab}`;
  const [tokRes, trainRes, valRes] = await Promise.all([
    fetchOk(`${root}/tokenizer.json`),
    fetchOk(`${root}/train`),
    fetchOk(`${root}/val`),
  ]);
  const tokenizer = Tokenizer.fromJSON(await tokRes.text());
  if (tokenizer.vocabSize !== vocab)
    throw new CorpusError(`${root}/tokenizer.json has ${tokenizer.vocabSize} tokens, not ${vocab}`);
  const [train, val] = await Promise.all([trainRes.arrayBuffer(), valRes.arrayBuffer()]);
  return {
    tokenizer,
    train: decodeTokenStream(train, vocab, `${root}/train`),
    val: decodeTokenStream(val, vocab, `${root}/val`),
  };
}
