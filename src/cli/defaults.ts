/**
 * Defaults the CLIs share, in a module that imports nothing: settle and verify-epoch need them without
 * loading the coordinator (libp2p, SQLite, the chain), which keeps their --help instant.
 */

/** The model a fresh coordinator registers, and the one settle and verify-epoch speak of by default. */
export const DEFAULT_MODEL_ID = 'brown-tiny';

/** Epochs close this often by default (TESSERA_EPOCH_SECONDS overrides). */
export const DEFAULT_EPOCH_SECONDS = 120;

/** Where `npm run coordinator` serves its API by default. */
export const DEFAULT_COORDINATOR_URL = 'http://127.0.0.1:8787';
