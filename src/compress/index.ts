export { CodecError, type Codec, type CodecContext } from './codec.ts';
export { makeBasis, SubspaceBasis, type BasisParams } from './basis.ts';
export {
  CODEC_NAMES,
  Int8Codec,
  isSubspaceCodec,
  makeCodec,
  NoneCodec,
  stack,
  SubspaceCodec,
  type CodecName,
  type CodecParams,
  type ReducingCodec,
} from './codecs.ts';
export {
  boundaryCodecs,
  codecForBoundary,
  projectedParams,
  releaseSubspaceGpu,
  stageNeedsSubspace,
  subspaceDrift,
  subspaceInit,
  subspaceProject,
  type BoundaryPlan,
} from './subspace-model.ts';
