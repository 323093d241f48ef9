import { describe, expect, it } from 'vitest';
import { proposalFacts } from '../../src/app/researcher/proposal-facts.ts';
import {
  checkDraft,
  checkSpec,
  DEFAULT_DRAFT,
  draftFromSpec,
  fieldOfError,
  parseLayout,
} from '../../src/app/researcher/proposal.ts';
import { stageCosts } from '../../src/train/run-derived.ts';
import { presetSpec, validateRunSpec, type RunSpec } from '../../src/train/run-spec.ts';

const preset = presetSpec(true);

/** What validateRunSpec says about the preset changed by `change`: the message the form must show. */
function refusal(change: (s: RunSpec) => unknown): string {
  const s = structuredClone(preset);
  try {
    validateRunSpec(change(s) ?? s);
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('the validator took it');
}

describe('model proposal form → RunSpec', () => {
  it('starts from the software preset and sends it unchanged', () => {
    expect(DEFAULT_DRAFT).toEqual(draftFromSpec(preset));
    const { proposal, errors } = checkDraft({ ...DEFAULT_DRAFT, name: ' Tiny four ' });
    expect(errors).toEqual({});
    expect(proposal).toEqual({ name: 'Tiny four', spec: preset });
    expect(validateRunSpec(proposal!.spec)).toEqual(preset);
  });

  it('gives the preset with only the changed fields changed, which the validator accepts', () => {
    const { proposal, errors } = checkDraft({
      ...DEFAULT_DRAFT,
      name: 'Wider',
      id: 'wider-two',
      vocab: '1024',
      dModel: ' 128',
      heads: '8',
      layers: '6',
      context: '32',
      layout: '4 2',
      microBatches: '2',
      batch: '8',
      codec: 'subspace+int8',
      tail: '1',
      lr: '2e-3',
      warmup: '10',
      steps: '500',
      weightDecay: '0',
      clip: '0.5',
      pricePer1kTokens: '0.25',
    });
    expect(errors).toEqual({});
    const spec: RunSpec = {
      ...preset,
      model: { ...preset.model, vocab: 1024, dModel: 128, heads: 8, layers: 6, context: 32 },
      layout: [4, 2],
      microBatches: 2,
      batch: 8,
      // No k: the subspace dimension stays derived from the width.
      codec: { name: 'subspace+int8', tail: 1 },
      optim: { ...preset.optim, lr: 0.002, warmup: 10, steps: 500, weightDecay: 0, clip: 0.5 },
      pricePer1kTokens: 0.25,
    };
    expect(proposal).toEqual({ id: 'wider-two', name: 'Wider', spec });
    expect(validateRunSpec(proposal!.spec)).toEqual(spec);
  });

  it('sends k only for subspace codecs', () => {
    const subspace = checkDraft({ ...DEFAULT_DRAFT, name: 'k', codec: 'subspace', k: '8' });
    expect(subspace.proposal?.spec.codec).toEqual({ name: 'subspace', k: 8, tail: 0 });
    const int8 = checkDraft({ ...DEFAULT_DRAFT, name: 'k', codec: 'int8', k: '8' });
    expect(int8.proposal?.spec.codec).toEqual({ name: 'int8', tail: 0 });
    expect(checkDraft({ ...DEFAULT_DRAFT, name: 'k', codec: 'subspace', k: '65' }).errors).toEqual({
      k: refusal((s) => {
        s.codec = { name: 'subspace', k: 65, tail: 0 };
      }),
    });
  });

  it("shows the validator's message, naming the field, at each wrong field", () => {
    const { proposal, errors } = checkDraft({
      ...DEFAULT_DRAFT,
      name: '',
      id: 'Bad Id',
      heads: '5',
      context: '1.5',
      layout: '2, 1',
      codec: 'zip',
      batch: '0',
      lr: 'fast',
      pricePer1kTokens: '-1',
    });
    expect(proposal).toBeUndefined();
    expect(errors).toEqual({
      name: 'give the model a name',
      id: expect.stringMatching(/lower-case/),
      heads: refusal((s) => {
        s.model.heads = 5;
      }),
      context: refusal((s) => {
        s.model.context = 1.5;
      }),
      layout: refusal((s) => {
        s.layout = [2, 1];
      }),
      codec: refusal((s) => ({ ...s, codec: { name: 'zip', tail: 0 } })),
      batch: refusal((s) => {
        s.batch = 0;
      }),
      lr: refusal((s) => ({ ...s, optim: { ...s.optim, lr: 'fast' } })),
      pricePer1kTokens: refusal((s) => {
        s.pricePer1kTokens = -1;
      }),
    });
    expect(errors.heads).toBe('model config: dModel 64 is not divisible by heads 5');
    expect(errors.context).toBe('model.context must be an integer in [1, 1048576], got 1.5');
    expect(errors.layout).toBe('stage layout [2,1] does not split 4 layers into 2 stages');
    expect(errors.lr).toBe('optim.lr must be a finite number in [0, 10], got "fast"');
    expect(checkSpec({ ...DEFAULT_DRAFT, layout: '' }).errors.layout).toMatch(/^layout must be an array/);
    expect(checkSpec({ ...DEFAULT_DRAFT, layout: '4 0 0' }).errors.layout).toBe(
      refusal((s) => {
        s.layout = [4, 0, 0];
      }),
    );
    expect(parseLayout('1,,2 3')).toEqual([1, 2, 3]);
    expect(parseLayout('1, x')).toEqual([1, 'x']);
  });

  it('maps a coordinator refusal to the field it names', () => {
    expect(fieldOfError('spec.optim.lr must be a finite number in [0, 10], got 20')).toBe('lr');
    expect(fieldOfError('spec.codec.name must be one of none, int8')).toBe('codec');
    expect(fieldOfError('spec.codec.k must be an integer in [1, 64], got 65')).toBe('k');
    expect(fieldOfError('spec.layout[1] must be an integer in [0, 4], got 7')).toBe('layout');
    expect(fieldOfError('spec.model.dModel must be an integer')).toBe('dModel');
    expect(fieldOfError("model config: head dim 256 exceeds the kernels' 64")).toBe('heads');
    expect(fieldOfError('name must be a string')).toBe('name');
    expect(fieldOfError('something else entirely')).toBeUndefined();
  });
});

describe('what a proposal trains', () => {
  it("shows run-derived's stage costs and tokens per step", () => {
    const f = proposalFacts(preset);
    expect(f.tokensPerStep).toBe(4 * 4 * 64);
    expect(f.tokensTotal).toBe(4 * 4 * 64 * 200);
    expect(f.k).toBeUndefined();
    expect(f.stages.map((s) => s.label)).toEqual(['layer 1 + embedding', 'layer 2', 'layer 3', 'layer 4 + head']);
    expect(f.stages.map((s) => s.flopsPerToken)).toEqual(stageCosts(preset).map((s) => s.flopsPerToken));
    expect(f.stages[0].flopsPerStep).toBe(f.stages[0].flopsPerToken * f.tokensPerStep);
    const head = proposalFacts({ ...preset, layout: [4, 0], codec: { name: 'subspace', tail: 0 } });
    expect(head.stages.map((s) => s.label)).toEqual(['layers 1–4 + embedding', 'no layers + head']);
    expect(head.k).toBe(16);
  });
});
