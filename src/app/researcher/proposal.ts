/**
 * The model proposal form's rules: text fields → a RunSpec built on the software preset, checked by the same
 * validateRunSpec the coordinator runs, so what the form refuses is what the coordinator would refuse, in the
 * same words, shown at the field the message names. Only the name and id, which travel beside the spec in
 * POST /api/models, are checked here.
 */
import { CODEC_NAMES, isSubspaceCodec } from '../../compress/codecs.ts';
import { presetSpec, validateRunSpec, type RunSpec } from '../../train/run-spec.ts';
import type { SpecModelProposal } from '../coordinator-api.ts';

export const CODECS = CODEC_NAMES;

/** Vocabularies the coordinator ships a tokenized corpus for: a browser tab can only train these. */
export const VOCABS = [1024, 2048, 4096] as const;

/** The form's fields, in the order it shows them (the first refused one takes the focus). */
export interface ProposalDraft {
  name: string;
  id: string;
  vocab: string;
  dModel: string;
  heads: string;
  layers: string;
  context: string;
  layout: string;
  microBatches: string;
  batch: string;
  codec: string;
  /** Subspace dimension; empty: derived from the width. Only read for subspace codecs. */
  k: string;
  tail: string;
  lr: string;
  warmup: string;
  steps: string;
  weightDecay: string;
  clip: string;
  pricePer1kTokens: string;
}

export type DraftKey = keyof ProposalDraft;
export type DraftErrors = Partial<Record<DraftKey, string>>;

/** The spec as the form's text, unnamed. */
export function draftFromSpec(spec: RunSpec): ProposalDraft {
  const { model, codec, optim } = spec;
  return {
    name: '',
    id: '',
    vocab: String(model.vocab),
    dModel: String(model.dModel),
    heads: String(model.heads),
    layers: String(model.layers),
    context: String(model.context),
    layout: spec.layout.join(', '),
    microBatches: String(spec.microBatches),
    batch: String(spec.batch),
    codec: codec.name,
    k: codec.k === undefined ? '' : String(codec.k),
    tail: String(codec.tail),
    lr: String(optim.lr),
    warmup: String(optim.warmup),
    steps: String(optim.steps),
    weightDecay: String(optim.weightDecay),
    clip: String(optim.clip),
    pricePer1kTokens: String(spec.pricePer1kTokens),
  };
}

/** The software preset: a model small enough to learn within minutes on a laptop. */
export const DEFAULT_DRAFT: ProposalDraft = draftFromSpec(presetSpec(true));

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/** A number when the text is one, else the text itself, so the validator's message quotes what was typed. */
function value(text: string): number | string {
  const t = text.trim();
  return NUMBER.test(t) ? Number(t) : t;
}

/** Layers per stage, "2, 1, 1" or "2 1 1"; each part a number when it reads as one. */
export function parseLayout(v: string): Array<number | string> {
  return v
    .split(/[\s,]+/)
    .filter(Boolean)
    .map(value);
}

/** `base` with the form's fields in place: unchecked, for validateRunSpec to judge. */
export function candidateSpec(d: ProposalDraft, base: RunSpec): unknown {
  const k = isSubspaceCodec(d.codec) && d.k.trim() !== '' ? { k: value(d.k) } : {};
  return {
    ...base,
    model: {
      ...base.model,
      vocab: value(d.vocab),
      dModel: value(d.dModel),
      heads: value(d.heads),
      layers: value(d.layers),
      context: value(d.context),
    },
    layout: parseLayout(d.layout),
    codec: { name: d.codec, tail: value(d.tail), ...k },
    microBatches: value(d.microBatches),
    batch: value(d.batch),
    optim: {
      ...base.optim,
      lr: value(d.lr),
      warmup: value(d.warmup),
      steps: value(d.steps),
      weightDecay: value(d.weightDecay),
      clip: value(d.clip),
    },
    pricePer1kTokens: value(d.pricePer1kTokens),
  };
}

/** The field a validator or coordinator message is about, by the path it names ("spec.optim.lr must be …"). */
const FIELD_OF_PATH: Record<string, DraftKey> = {
  'model.vocab': 'vocab',
  'model.dModel': 'dModel',
  'model.heads': 'heads',
  'model.layers': 'layers',
  'model.context': 'context',
  layout: 'layout',
  microBatches: 'microBatches',
  batch: 'batch',
  'codec.name': 'codec',
  'codec.k': 'k',
  'codec.tail': 'tail',
  'optim.lr': 'lr',
  'optim.warmup': 'warmup',
  'optim.steps': 'steps',
  'optim.weightDecay': 'weightDecay',
  'optim.clip': 'clip',
  pricePer1kTokens: 'pricePer1kTokens',
  name: 'name',
  id: 'id',
};

export function fieldOfError(message: string): DraftKey | undefined {
  // validateConfig's messages name no path: a width the heads do not divide, or heads too wide for the kernels.
  if (/^model config: (dModel \d+ is not divisible by heads|head dim)/.test(message)) return 'heads';
  for (const [word] of message.matchAll(/[A-Za-z][\w.]*/g)) {
    const field = FIELD_OF_PATH[word.replace(/^spec\./, '')];
    if (field) return field;
  }
  return undefined;
}

/**
 * Every field validateRunSpec refuses, each with its message: the validator stops at the first, so the refused
 * field takes the base value and the check runs again. `general`: a refusal that names no form field.
 */
export function checkSpec(
  d: ProposalDraft,
  base: RunSpec = presetSpec(true),
): { spec?: RunSpec; errors: DraftErrors; general?: string } {
  const errors: DraftErrors = {};
  const fallback = draftFromSpec(base);
  let draft = d;
  for (;;) {
    try {
      const spec = validateRunSpec(candidateSpec(draft, base));
      return Object.keys(errors).length > 0 ? { errors } : { spec, errors };
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      const field = fieldOfError(message);
      // A refusal that stays with the base value (or names no field) ends the search.
      if (!field || errors[field] !== undefined) return { errors, general: field ? undefined : message };
      errors[field] = message;
      draft = { ...draft, [field]: fallback[field] };
    }
  }
}

const ID = /^[a-z0-9][a-z0-9-]{0,63}$/;

/** The form → a POST /api/models body `{ id?, name, spec }`, or the reasons, per field, it cannot be sent. */
export function checkDraft(
  d: ProposalDraft,
  base: RunSpec = presetSpec(true),
): { proposal?: SpecModelProposal; errors: DraftErrors; general?: string } {
  const errors: DraftErrors = {};
  const name = d.name.trim();
  if (name === '') errors.name = 'give the model a name';
  else if (name.length > 100) errors.name = 'at most 100 characters';
  const id = d.id.trim();
  if (id !== '' && !ID.test(id))
    errors.id = 'lower-case letters, digits and dashes, starting with a letter or digit (at most 64)';
  const checked = checkSpec(d, base);
  Object.assign(errors, checked.errors);
  if (!checked.spec || Object.keys(errors).length > 0) return { errors, general: checked.general };
  return { errors, proposal: { ...(id ? { id } : {}), name, spec: checked.spec } };
}
