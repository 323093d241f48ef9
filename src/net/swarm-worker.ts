/**
 * The swarm worker: a volunteer peer that trains one stage of a model in a pipeline of peers and rides out
 * pipeline changes. Its parts live in src/net/worker/ (start with swarm-worker.ts there: its header follows one
 * training step from the state machine to the StageRunner); this module is its public face.
 */
export { AUDIT_FRACTION, type SwarmWorkerOptions, type WorkerStep } from './worker/options.ts';
export { SwarmWorker } from './worker/swarm-worker.ts';
