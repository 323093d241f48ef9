/** What the inference API asks of whoever generates: the stage holders of a model (swarm-backend.ts). */
import type { SamplingOptions } from './sample.ts';

export interface GenerateRequest {
  modelId: string;
  prompt: Int32Array;
  maxTokens: number;
  sampling: SamplingOptions;
  signal: AbortSignal;
}

/** Greedy (temperature 0) and never aborted: the request whose tokens are compared with another generation's. */
export function greedyRequest(modelId: string, prompt: ArrayLike<number>, maxTokens: number): GenerateRequest {
  return {
    modelId,
    prompt: Int32Array.from(prompt),
    maxTokens,
    sampling: { temperature: 0 },
    signal: new AbortController().signal,
  };
}

export interface Generated {
  tokens: number[];
  /** length: max tokens reached; stop: onToken asked to stop. */
  finish: 'length' | 'stop';
}

/** Runs a generation; `onToken` sees each token as the last stage samples it and returns true to stop there. */
export interface InferenceBackend {
  generate(req: GenerateRequest, onToken: (id: number) => boolean | void): Promise<Generated>;
}
