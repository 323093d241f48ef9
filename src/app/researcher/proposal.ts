/**
 * The model proposal form's rules: text fields → a POST /api/models body, or a reason per field. The
 * coordinator builds the RunSpec from it (optimiser and schedule from the software preset) and checks
 * everything again (validateRunSpec); these checks only save a round trip and say which field is wrong.
 */
import type { FlatModelProposal } from '../coordinator-api.ts';

/** The codecs a boundary can use (src/coordinator/API.md, POST /api/models). */
export const CODECS = ['none', 'int8', 'subspace', 'subspace+int8'] as const;

/** Vocabularies the coordinator ships a tokenized corpus for: a browser tab can only train these. */
export const VOCABS = [1024, 2048, 4096] as const;

export interface ProposalDraft {
  id: string;
  name: string;
  vocab: string;
  dModel: string;
  heads: string;
  layers: string;
  context: string;
  layout: string;
  codec: string;
  microBatches: string;
  batch: string;
  pricePer1kTokens: string;
}

/** Small enough for a laptop GPU to train a stage, big enough to learn something: 4 stages of one layer. */
export const DEFAULT_DRAFT: ProposalDraft = {
  id: '',
  name: '',
  vocab: '1024',
  dModel: '64',
  heads: '4',
  layers: '4',
  context: '64',
  layout: '1, 1, 1, 1',
  codec: 'int8',
  microBatches: '4',
  batch: '2',
  pricePer1kTokens: '0.0001',
};

export type DraftErrors = Partial<Record<keyof ProposalDraft, string>>;

const ID = /^[a-z0-9][a-z0-9-]{0,63}$/;

function int(v: string, min: number, max: number): number | string {
  const t = v.trim();
  if (!/^\d+$/.test(t)) return 'a whole number';
  const n = Number(t);
  if (n < min || n > max) return `between ${min} and ${max}`;
  return n;
}

/** Layers per stage, "2, 1, 1" or "2 1 1". */
export function parseLayout(v: string): number[] | undefined {
  const parts = v.split(/[\s,]+/).filter(Boolean);
  if (parts.length === 0 || parts.some((p) => !/^\d+$/.test(p))) return undefined;
  return parts.map(Number);
}

export function checkDraft(d: ProposalDraft): { proposal?: FlatModelProposal; errors: DraftErrors } {
  const errors: DraftErrors = {};
  const num = (k: keyof ProposalDraft, min: number, max: number): number => {
    const r = int(d[k], min, max);
    if (typeof r === 'string') {
      errors[k] = `must be ${r}`;
      return NaN;
    }
    return r;
  };
  const name = d.name.trim();
  if (name === '') errors.name = 'give the model a name';
  else if (name.length > 100) errors.name = 'at most 100 characters';
  const id = d.id.trim();
  if (id !== '' && !ID.test(id))
    errors.id = 'lower-case letters, digits and dashes, starting with a letter or digit (at most 64)';
  const vocab = num('vocab', 2, 1 << 24);
  const dModel = num('dModel', 1, 1 << 16);
  const heads = num('heads', 1, 1 << 10);
  const layers = num('layers', 1, 4096);
  const context = num('context', 1, 1 << 20);
  const microBatches = num('microBatches', 1, 4096);
  const batch = num('batch', 1, 1 << 16);
  if (Number.isFinite(dModel) && Number.isFinite(heads) && dModel % heads !== 0)
    errors.heads = `must divide the model width (${dModel})`;
  const layout = parseLayout(d.layout);
  if (!layout) errors.layout = 'layers per stage, e.g. "1, 1, 1, 1"';
  else if (layout.some((n) => n < 1)) errors.layout = 'every stage needs at least one layer';
  else if (Number.isFinite(layers) && layout.reduce((a, b) => a + b, 0) !== layers)
    errors.layout = `the stages' layers add up to ${layout.reduce((a, b) => a + b, 0)}, not ${layers}`;
  if (!(CODECS as readonly string[]).includes(d.codec)) errors.codec = `one of ${CODECS.join(', ')}`;
  const price = Number(d.pricePer1kTokens.trim());
  if (d.pricePer1kTokens.trim() === '' || !Number.isFinite(price) || price < 0)
    errors.pricePer1kTokens = 'a price in ETH, 0 or more';
  if (Object.keys(errors).length > 0) return { errors };
  return {
    errors,
    proposal: {
      ...(id ? { id } : {}),
      name,
      config: { vocab, dModel, heads, layers, context },
      layout: layout!,
      codec: d.codec,
      microBatches,
      batch,
      pricePer1kTokens: price,
    },
  };
}

/** Which form field a coordinator refusal is about, from the field path its message names ("config.heads …"). */
export function fieldOfError(message: string): keyof ProposalDraft | undefined {
  const m =
    /\b(config\.)?(vocab|dModel|heads|layers|context|layout|codec|microBatches|batch|pricePer1kTokens|name|id)\b/.exec(
      message,
    );
  return m ? (m[2] as keyof ProposalDraft) : undefined;
}
