/**
 * One error hierarchy: every error class in src/ descends from TesseraError, carries a stable kebab-case
 * `code` and its own class name. The codes below are a contract (workers, the app and logs branch on them):
 * changing one should fail here first.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ApiError } from '../src/app/http.ts';
import { PromptError } from '../src/app/researcher/prompt.ts';
import { ChainWriteError } from '../src/chain/client.ts';
import { CodecError } from '../src/compress/codec.ts';
import { HTTP, HttpError, type HttpKind } from '../src/coordinator/errors.ts';
import { BatchError, CorpusError, DataError, TokenizerFormatError, VocabSizeError } from '../src/data/errors.ts';
import { TesseraError } from '../src/errors.ts';
import {
  ArgumentError,
  DeviceLostError,
  DTypeError,
  GpuValidationError,
  LimitError,
  ShapeError,
  TesseraGpuError,
  TokenRangeError,
  WebGpuUnavailableError,
} from '../src/gpu/errors.ts';
import { TurnAbortedError } from '../src/gpu/gpu-turns.ts';
import { WgslIncludeError } from '../src/gpu/wgsl-include.ts';
import { ContextLengthError, SessionLimitError, UnknownSessionError } from '../src/infer/kv-cache.ts';
import { OnnxRuntimeError } from '../src/infer/onnx-stage.ts';
import { BindingError } from '../src/ledger/binding.ts';
import { ReceiptError } from '../src/ledger/receipt.ts';
import { RequestAuthError } from '../src/ledger/request-auth.ts';
import { CheckpointError } from '../src/model/checkpoint.ts';
import { SafetensorsError } from '../src/model/safetensors.ts';
import { NonFiniteGradientError } from '../src/model/stage.ts';
import { CoordinatorError } from '../src/net/coordinator-client.ts';
import { NetError } from '../src/net/node.ts';
import { Reconfigure } from '../src/net/rendezvous.ts';
import { StageTransferError } from '../src/net/stage-transfer.ts';
import { WireError } from '../src/net/stream-io.ts';
import { PhaseError } from '../src/net/worker/phase.ts';
import { NonFiniteTensorError } from '../src/train/frame-body.ts';
import { RunSpecError } from '../src/train/run-spec.ts';
import { FrameError, TransportError } from '../src/train/transport.ts';

const SRC = resolve(import.meta.dirname, '../src');
const KEBAB = /^[a-z0-9]+(?:-[a-z0-9]+)*$/;

/** Each exported error class, one instance of it, and the code that instance must carry. */
const CASES: Array<[new (...a: never[]) => Error, () => Error, string]> = [
  [TesseraError, () => new TesseraError('some-code', 'm'), 'some-code'],
  [TesseraGpuError, () => new TesseraGpuError('gpu-code', 'm'), 'gpu-code'],
  [WebGpuUnavailableError, () => new WebGpuUnavailableError('m', 'advice'), 'webgpu-unavailable'],
  [ShapeError, () => new ShapeError('m'), 'shape'],
  [DTypeError, () => new DTypeError('m'), 'dtype'],
  [LimitError, () => new LimitError('m'), 'limit'],
  [DeviceLostError, () => new DeviceLostError('gone'), 'device-lost'],
  [GpuValidationError, () => new GpuValidationError('m'), 'validation'],
  [ArgumentError, () => new ArgumentError('m'), 'argument'],
  [TokenRangeError, () => new TokenRangeError('m'), 'token-range'],
  [TurnAbortedError, () => new TurnAbortedError('train', new Error('why')), 'turn-aborted'],
  [WgslIncludeError, () => new WgslIncludeError('m'), 'wgsl-include'],
  [DataError, () => new DataError('data-code', 'm'), 'data-code'],
  [VocabSizeError, () => new VocabSizeError('m'), 'vocab-size'],
  [TokenizerFormatError, () => new TokenizerFormatError('m'), 'tokenizer-format'],
  [BatchError, () => new BatchError('m'), 'batch'],
  [CorpusError, () => new CorpusError('m'), 'corpus'],
  [SafetensorsError, () => new SafetensorsError('m'), 'safetensors'],
  [NonFiniteGradientError, () => new NonFiniteGradientError(Number.NaN), 'non-finite-gradient'],
  [CheckpointError, () => new CheckpointError('hash', 'm'), 'checkpoint'],
  [CodecError, () => new CodecError('m'), 'codec'],
  [TransportError, () => new TransportError('m'), 'transport'],
  [FrameError, () => new FrameError('why'), 'frame'],
  [NonFiniteTensorError, () => new NonFiniteTensorError('act', 3, Number.NaN), 'non-finite-tensor'],
  [RunSpecError, () => new RunSpecError('m'), 'argument'],
  [ContextLengthError, () => new ContextLengthError('m'), 'context-length'],
  [SessionLimitError, () => new SessionLimitError('m'), 'session-limit'],
  [UnknownSessionError, () => new UnknownSessionError('m'), 'unknown-session'],
  [OnnxRuntimeError, () => new OnnxRuntimeError('m'), 'onnx-runtime'],
  [Reconfigure, () => new Reconfigure('m'), 'reconfigure'],
  [StageTransferError, () => new StageTransferError('hash', 'm'), 'stage-transfer'],
  [
    PhaseError,
    () => new PhaseError({ phase: 'idle' } as ConstructorParameters<typeof PhaseError>[0], { type: 'x' } as never),
    'phase',
  ],
  [WireError, () => new WireError('m'), 'wire'],
  [NetError, () => new NetError('m'), 'net'],
  [CoordinatorError, () => new CoordinatorError(409, 'm', 'conflict'), 'conflict'],
  [ReceiptError, () => new ReceiptError('m'), 'receipt'],
  [BindingError, () => new BindingError('m'), 'binding'],
  [RequestAuthError, () => new RequestAuthError('m'), 'request-auth'],
  [ChainWriteError, () => new ChainWriteError('claim', 'm'), 'chain-write'],
  [HttpError, () => new HttpError('conflict', 'm'), 'conflict'],
  [ApiError, () => new ApiError('m', 400, 'bad-request'), 'bad-request'],
  [PromptError, () => new PromptError('m', 402), 'prompt'],
];

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory()
      ? sourceFiles(join(dir, d.name))
      : /\.tsx?$/.test(d.name) && !d.name.endsWith('.d.ts')
        ? [join(dir, d.name)]
        : [],
  );
}

/** Every `class X extends Y` in src/, with its file (relative to src/) and whether it is exported. */
function classes(): Array<{ name: string; parent: string; file: string; exported: boolean }> {
  return sourceFiles(SRC).flatMap((path) =>
    [
      ...readFileSync(path, 'utf8').matchAll(/^[ \t]*(export\s+)?(?:abstract\s+)?class\s+(\w+)\s+extends\s+([\w.]+)/gm),
    ].map((m) => ({ name: m[2], parent: m[3], file: relative(SRC, path), exported: m[1] !== undefined })),
  );
}

const BUILTINS = 'Error|TypeError|RangeError|SyntaxError|ReferenceError|EvalError|URIError|AggregateError|DOMException';
const BUILTIN_ERRORS = new RegExp(`^(?:globalThis\\.)?(?:${BUILTINS})$`);

describe('error hierarchy', () => {
  it.each(CASES.map(([cls, make, code]) => [cls.name, cls, make, code] as const))(
    '%s is a TesseraError with its own name and a stable code',
    (name, cls, make, code) => {
      const e = make();
      expect(e).toBeInstanceOf(TesseraError);
      expect(e).toBeInstanceOf(Error);
      expect(e).toBeInstanceOf(cls);
      expect(e.name).toBe(name);
      expect((e as TesseraError).code).toBe(code);
      expect(code).toMatch(KEBAB);
      expect(e.message.length).toBeGreaterThan(0);
    },
  );

  it('keeps a cause', () => {
    const cause = new Error('below');
    expect(new TesseraError('x', 'above', { cause }).cause).toBe(cause);
    expect(new HttpError('store', 'above', { cause }).cause).toBe(cause);
  });

  it('HttpError answers each kind with its status and code (the API’s JSON depends on them)', () => {
    const table = Object.fromEntries(Object.entries(HTTP).map(([k, v]) => [k, [v.status, v.code]]));
    expect(table).toEqual({
      badRequest: [400, 'bad-request'],
      unauthorized: [401, 'unauthorized'],
      paymentRequired: [402, 'payment-required'],
      forbidden: [403, 'forbidden'],
      notFound: [404, 'not-found'],
      methodNotAllowed: [405, 'method-not-allowed'],
      conflict: [409, 'conflict'],
      payloadTooLarge: [413, 'payload-too-large'],
      unsupportedMediaType: [415, 'unsupported-media-type'],
      misdirected: [421, 'misdirected-request'],
      tooManyRequests: [429, 'too-many-requests'],
      store: [500, 'store'],
      unavailable: [503, 'unavailable'],
      diskFull: [507, 'disk-full'],
    });
    for (const kind of Object.keys(HTTP) as HttpKind[]) {
      const e = new HttpError(kind, `a ${kind}`);
      expect(e).toMatchObject({ name: 'HttpError', kind, status: HTTP[kind].status, code: HTTP[kind].code });
      expect(e.message).toBe(`a ${kind}`);
      expect(e.code).toMatch(KEBAB);
    }
  });

  it('client errors say whether the code is the coordinator’s', () => {
    expect(new ApiError('m', 409, 'conflict')).toMatchObject({ code: 'conflict', fromCoordinator: true });
    expect(new ApiError('m', 0)).toMatchObject({ code: 'unreachable', fromCoordinator: false });
    expect(new ApiError('m', 200)).toMatchObject({ code: 'bad-answer', fromCoordinator: false });
    expect(new CoordinatorError(502, 'm')).toMatchObject({ status: 502, code: 'bad-answer' });
  });

  it('no class in src/ extends a built-in error but TesseraError itself', () => {
    const roots = classes().filter((c) => BUILTIN_ERRORS.test(c.parent));
    expect(roots.map((c) => `${c.file}: ${c.name} extends ${c.parent}`)).toEqual([
      'errors.ts: TesseraError extends Error',
    ]);
  });

  it('every exported error class in src/ descends from TesseraError', async () => {
    const all = classes();
    const parentOf = new Map(all.map((c) => [c.name, c.parent]));
    const isError = (name: string, seen = new Set<string>()): boolean => {
      if (name === 'TesseraError' || BUILTIN_ERRORS.test(name)) return true;
      const parent = parentOf.get(name);
      if (parent === undefined || seen.has(name)) return false;
      seen.add(name);
      return isError(parent, seen);
    };
    const errors = all.filter((c) => c.exported && isError(c.name));
    const listed = new Set(CASES.map(([cls]) => cls.name));
    // The scan finds every class listed above (so it would find a new one too).
    expect([...listed].filter((n) => !errors.some((c) => c.name === n))).toEqual([]);
    for (const c of errors.filter((x) => !listed.has(x.name))) {
      // Not in CASES (a new class): at least its prototype chain must reach TesseraError.
      const mod = (await import(/* @vite-ignore */ join(SRC, c.file))) as Record<string, unknown>;
      const cls = mod[c.name] as { prototype: unknown };
      expect(cls.prototype instanceof TesseraError, `${c.file}: ${c.name}`).toBe(true);
    }
  });
});
