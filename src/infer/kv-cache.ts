import { ArgumentError, TesseraGpuError, type Gpu, type Tensor } from '../gpu/index.ts';

/** A prompt (or prompt + generated tokens) longer than a session may hold: nothing was computed or kept. */
export class ContextLengthError extends TesseraGpuError {
  constructor(message: string) {
    super('context-length', message);
  }
}

/** Every session slot is taken by a session used too recently to evict: retry later or raise maxSessions. */
export class SessionLimitError extends TesseraGpuError {
  constructor(message: string) {
    super('session-limit', message);
  }
}

/** decode() for a session that has no cache here (never prefilled, ended, or evicted): prefill it again. */
export class UnknownSessionError extends TesseraGpuError {
  constructor(message: string) {
    super('unknown-session', message);
  }
}

export interface KvCacheOptions {
  /** Sessions held at once; opening one more evicts the least recently used evictable session. */
  maxSessions: number;
  /** Positions one session may hold (prompt + generated tokens). */
  maxTokensPerSession: number;
  /**
   * A session is evictable to make room once untouched this long (default 0: the least recently used one
   * always is). A pipeline keeps a generation's sessions alive between its decode steps with this.
   */
  evictableAfterMs?: number;
  /** Sessions untouched this long are dropped by sweep(), which every open runs (default: never). */
  idleTimeoutMs?: number;
  /** Rows first allocated per layer; a session's cache grows by doubling up to maxTokensPerSession (default 64). */
  initialTokens?: number;
  /** Told of every eviction (e.g. to log it, or to tell the requester). */
  onEvict?: (session: string, reason: 'lru' | 'idle') => void;
  /** Clock in ms (tests). */
  now?: () => number;
}

export interface KvSession {
  readonly id: string;
  /** Positions cached so far. */
  length: number;
  /** Rows allocated per layer. */
  capacity: number;
  /** Per layer of the stage: [capacity, 2C], row j = k_j | v_j (see ops/attention-decode.ts). */
  layers: Tensor[];
  lastUsed: number;
  /** Caller's tag, e.g. the optimizer step of the weights the cache was computed with. */
  tag?: number;
}

export interface KvCacheStats {
  sessions: number;
  /** Positions cached over all sessions. */
  tokens: number;
  /** GPU bytes the caches hold (allocated capacity). */
  bytes: number;
  /** What the caches may ever hold: maxSessions · maxTokensPerSession · bytesPerToken. */
  maxBytes: number;
  evictions: number;
}

/**
 * Per-session KV caches of one stage's layers, bounded in sessions and positions, least recently used first
 * out. Memory is allocated as a session grows (doubling), so short sessions stay small; every tensor goes
 * back to the pool when its session ends or is evicted.
 */
export class KvCache {
  readonly gpu: Gpu;
  readonly layers: number;
  readonly channels: number;
  readonly opts: Required<Omit<KvCacheOptions, 'onEvict'>> & Pick<KvCacheOptions, 'onEvict'>;
  /** Insertion order is recency order: the first entry is the least recently used. */
  private readonly sessions = new Map<string, KvSession>();
  private evictions = 0;

  constructor(gpu: Gpu, shape: { layers: number; channels: number }, opts: KvCacheOptions) {
    for (const [k, v] of [
      ['maxSessions', opts.maxSessions],
      ['maxTokensPerSession', opts.maxTokensPerSession],
      ['channels', shape.channels],
    ] as const) {
      if (!Number.isInteger(v) || v < 1) throw new ArgumentError(`KvCache: ${k} must be a positive integer, got ${v}`);
    }
    // A stage may own no blocks (only the embeddings or the head): it still tracks positions.
    if (!Number.isInteger(shape.layers) || shape.layers < 0)
      throw new ArgumentError(`KvCache: layers must be a non-negative integer, got ${shape.layers}`);
    for (const k of ['evictableAfterMs', 'idleTimeoutMs', 'initialTokens'] as const) {
      const v = opts[k];
      if (v !== undefined && !(v >= 0)) throw new ArgumentError(`KvCache: ${k} must be ≥ 0, got ${v}`);
    }
    this.gpu = gpu;
    this.layers = shape.layers;
    this.channels = shape.channels;
    this.opts = {
      evictableAfterMs: 0,
      idleTimeoutMs: Infinity,
      initialTokens: 64,
      now: () => Date.now(),
      ...opts,
    };
  }

  /** GPU bytes one cached position takes across the stage's layers (k and v, float32). */
  get bytesPerToken(): number {
    return this.layers * 2 * this.channels * 4;
  }

  has(id: string): boolean {
    return this.sessions.has(id);
  }

  /** The session without touching its recency, or undefined. */
  peek(id: string): Readonly<KvSession> | undefined {
    return this.sessions.get(id);
  }

  ids(): string[] {
    return [...this.sessions.keys()];
  }

  /**
   * Makes room for `t` more positions in session `id` and returns it, most recently used. With `create`, a
   * new session is opened (evicting one if all slots are taken); without, an unknown id throws. Limits are
   * checked before anything changes: a refused request creates, evicts and grows nothing.
   */
  reserve(id: string, t: number, create: boolean): KvSession {
    if (!Number.isInteger(t) || t < 1) throw new ArgumentError(`KvCache: ${t} new positions (need at least 1)`);
    const max = this.opts.maxTokensPerSession;
    let s = this.sessions.get(id);
    if (!s && !create)
      throw new UnknownSessionError(
        `session ${JSON.stringify(id)} has no KV cache on this stage (never prefilled, ended, or evicted): ` +
          `prefill it again`,
      );
    const length = s?.length ?? 0;
    if (length + t > max) {
      throw new ContextLengthError(
        `session ${JSON.stringify(id)}: ${length} cached + ${t} new positions exceed the ${max} a session may hold`,
      );
    }
    if (!s) {
      this.sweep();
      if (this.sessions.size >= this.opts.maxSessions) this.evictOne();
      s = { id, length: 0, capacity: 0, layers: [], lastUsed: 0 };
    }
    this.grow(s, length + t);
    s.lastUsed = this.opts.now();
    this.sessions.delete(id);
    this.sessions.set(id, s);
    return s;
  }

  /** Records that `t` positions were written after reserve(). */
  commit(s: KvSession, t: number): void {
    s.length += t;
  }

  /** Drops a session and frees its memory; false if there was none. */
  end(id: string): boolean {
    const s = this.sessions.get(id);
    if (!s) return false;
    this.sessions.delete(id);
    this.gpu.release(...s.layers);
    s.layers = [];
    return true;
  }

  /** Drops sessions idle longer than idleTimeoutMs; returns their ids. */
  sweep(): string[] {
    const now = this.opts.now();
    const dropped: string[] = [];
    for (const s of [...this.sessions.values()]) {
      if (now - s.lastUsed >= this.opts.idleTimeoutMs) {
        this.end(s.id);
        this.evictions++;
        dropped.push(s.id);
        this.opts.onEvict?.(s.id, 'idle');
      }
    }
    return dropped;
  }

  stats(): KvCacheStats {
    let tokens = 0;
    let rows = 0;
    for (const s of this.sessions.values()) {
      tokens += s.length;
      rows += s.capacity;
    }
    const maxBytes = this.opts.maxSessions * this.opts.maxTokensPerSession * this.bytesPerToken;
    return {
      sessions: this.sessions.size,
      tokens,
      bytes: rows * this.bytesPerToken,
      maxBytes,
      evictions: this.evictions,
    };
  }

  destroy(): void {
    for (const id of [...this.sessions.keys()]) this.end(id);
  }

  private evictOne(): void {
    const lru = this.sessions.values().next().value!;
    const idle = this.opts.now() - lru.lastUsed;
    if (idle < this.opts.evictableAfterMs) {
      throw new SessionLimitError(
        `all ${this.opts.maxSessions} inference sessions are in use (the least recently used was touched ` +
          `${idle} ms ago, ` +
          `under the ${this.opts.evictableAfterMs} ms that makes it evictable): retry later`,
      );
    }
    this.end(lru.id);
    this.evictions++;
    this.opts.onEvict?.(lru.id, 'lru');
  }

  /** Ensures capacity ≥ need rows per layer, doubling (capped at maxTokensPerSession) and keeping the cached rows. */
  private grow(s: KvSession, need: number): void {
    if (need <= s.capacity) return;
    const max = this.opts.maxTokensPerSession;
    let cap = Math.max(1, s.capacity, Math.min(this.opts.initialTokens, max));
    while (cap < need) cap *= 2;
    cap = Math.min(cap, max);
    const width = 2 * this.channels;
    const fresh: Tensor[] = [];
    for (let l = 0; l < this.layers; l++) {
      const t = this.gpu.empty([cap, width], 'f32', `kv.${s.id}.${l}`);
      if (s.length > 0) this.gpu.copy(s.layers[l], t, { count: s.length * width });
      fresh.push(t);
    }
    this.gpu.release(...s.layers);
    s.layers = fresh;
    s.capacity = cap;
  }
}
