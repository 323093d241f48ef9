import {
  DeviceLostError,
  GpuValidationError,
  LimitError,
  TesseraGpuError,
  WebGpuUnavailableError,
} from '../gpu/index.ts';

/** Something a person can act on: what happened, in their words, and what to do about it. */
export interface Problem {
  kind: 'unavailable' | 'device-lost' | 'limit' | 'validation' | 'unknown';
  title: string;
  /** The error's own message (technical detail). */
  message: string;
  /** What to do next. */
  advice: string;
}

const REPORT = 'If it keeps happening, please report it with the details above.';

const ADVICE: Record<Exclude<Problem['kind'], 'unavailable'>, { title: string; advice: string }> = {
  'device-lost': {
    title: 'The connection to your GPU was lost',
    advice:
      'This happens when the graphics driver resets, the GPU is reclaimed by the system, or the tab sat in the ' +
      'background too long. ' +
      'Click "Reconnect GPU" or reload the page. If it happens often, update your graphics driver and close ' +
      'other GPU-heavy tabs.',
  },
  limit: {
    title: 'A kernel needs more than your GPU allows',
    advice:
      "Tessera sizes its kernels to each device's limits, so this is a bug on our side. Meanwhile, try the " +
      'latest Chrome or Edge, ' +
      `or another device. ${REPORT}`,
  },
  validation: {
    title: 'WebGPU rejected work that Tessera submitted',
    advice: `Update your browser and graphics driver, then reload. ${REPORT}`,
  },
  unknown: {
    title: 'Something went wrong while using your GPU',
    advice: `Reload the page. If that does not help, update your browser and graphics driver. ${REPORT}`,
  },
};

function kindOf(e: unknown): Problem['kind'] {
  if (e instanceof WebGpuUnavailableError) return 'unavailable';
  if (e instanceof DeviceLostError) return 'device-lost';
  if (e instanceof LimitError) return 'limit';
  if (e instanceof GpuValidationError) return 'validation';
  return 'unknown';
}

export function explainError(e: unknown): Problem {
  const message = e instanceof Error ? e.message : String(e);
  if (e instanceof WebGpuUnavailableError) {
    return { kind: 'unavailable', title: 'WebGPU is not available here', message, advice: e.advice };
  }
  const kind = kindOf(e);
  const { title, advice } = ADVICE[kind as Exclude<Problem['kind'], 'unavailable'>];
  const detail = e instanceof TesseraGpuError || !(e instanceof Error) ? message : `${e.name}: ${message}`;
  return { kind, title, message: detail, advice };
}

/** The self-test reports an op that threw as "<ErrorName>: <message>"; map the name back to advice. */
export function explainOpError(text: string): Problem {
  const name = /^(\w+):/.exec(text)?.[1] ?? '';
  const kind: Exclude<Problem['kind'], 'unavailable'> =
    name === 'DeviceLostError'
      ? 'device-lost'
      : name === 'LimitError'
        ? 'limit'
        : name === 'GpuValidationError'
          ? 'validation'
          : 'unknown';
  return { kind, title: ADVICE[kind].title, message: text, advice: ADVICE[kind].advice };
}
