/** Limits of the coordinator's API that clients size their requests by. */

/** Largest request body the coordinator reads (larger ones are answered 413 without being read). */
export const MAX_BODY_BYTES = 64 * 1024;

/** Receipts one `POST /api/models/:id/receipts` may carry. */
export const MAX_RECEIPTS_PER_POST = 512;
