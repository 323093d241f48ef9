/**
 * GET /api/models/:id/live: server-sent events for the Researcher page. On connect, `snapshot` (the last 500
 * metrics and throughput points, so a fresh page draws its curves at once); then `metric` and `throughput`
 * as steps are recorded, and `topology` at most every `topologyMs` when it changed. A comment every
 * `keepAliveMs` keeps proxies from closing an idle stream. Clients are capped (503 beyond); one that
 * disconnects, or reads so slowly that a megabyte queues up for it, is dropped and forgotten.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HttpError } from './errors.ts';
import type { Logger, MetricRecord, ThroughputPoint } from './types.ts';

export const SNAPSHOT_POINTS = 500;
const MAX_QUEUED_BYTES = 1 << 20;

export interface LiveSource {
  snapshot(modelId: string): { metrics: MetricRecord[]; throughput: ThroughputPoint[] };
  /** The topology as the API answers it (throws for an unknown model). */
  topology(modelId: string): unknown;
}

export interface LiveOptions {
  source: LiveSource;
  log: Logger;
  /** Most open streams at once (default 100). */
  maxClients?: number;
  /** Topology pushes at most this often (default 2000 ms). */
  topologyMs?: number;
  keepAliveMs?: number;
}

interface Client {
  modelId: string;
  res: ServerResponse;
  /** The last topology this client got (JSON), so an unchanged one is not resent. */
  topology: string;
}

export class LiveHub {
  private readonly o: LiveOptions;
  private readonly clients = new Set<Client>();
  private timer: ReturnType<typeof setInterval> | null = null;
  private keepAlive: ReturnType<typeof setInterval> | null = null;

  constructor(opts: LiveOptions) {
    this.o = opts;
  }

  get size(): number {
    return this.clients.size;
  }

  /** Answers the request with an event stream (the model is checked first: an unknown one throws 404). */
  open(modelId: string, req: IncomingMessage, res: ServerResponse, headers: Record<string, string>): void {
    const snapshot = this.o.source.snapshot(modelId);
    const max = this.o.maxClients ?? 100;
    if (this.clients.size >= max)
      throw new HttpError('unavailable', `too many live streams open (${max}); try again later`);
    const topology = JSON.stringify(this.o.source.topology(modelId));
    res.writeHead(200, {
      ...headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    const client: Client = { modelId, res, topology };
    this.clients.add(client);
    const drop = () => this.drop(client);
    req.on('close', drop);
    res.on('close', drop);
    res.on('error', drop);
    this.write(client, 'snapshot', JSON.stringify(snapshot));
    this.write(client, 'topology', topology);
    this.start();
  }

  /** A metric was recorded (pushed to the model's streams). */
  metric(m: MetricRecord): void {
    this.broadcast(m.modelId, 'metric', m);
  }

  throughput(modelId: string, p: ThroughputPoint): void {
    this.broadcast(modelId, 'throughput', p);
  }

  /** Ends every stream and stops the timers. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.keepAlive) clearInterval(this.keepAlive);
    this.timer = this.keepAlive = null;
    for (const c of [...this.clients]) {
      this.clients.delete(c);
      c.res.end();
    }
  }

  private start(): void {
    this.timer ??= setInterval(() => this.pushTopologies(), this.o.topologyMs ?? 2000);
    this.keepAlive ??= setInterval(() => {
      for (const c of [...this.clients]) this.send(c, ': keep-alive\n\n');
    }, this.o.keepAliveMs ?? 15_000);
    this.timer.unref?.();
    this.keepAlive.unref?.();
  }

  private pushTopologies(): void {
    const models = new Set([...this.clients].map((c) => c.modelId));
    for (const id of models) {
      let json: string;
      try {
        json = JSON.stringify(this.o.source.topology(id));
      } catch (e) {
        this.o.log('warn', `live topology of ${id}: ${(e as Error).message}`);
        continue;
      }
      for (const c of [...this.clients]) {
        if (c.modelId !== id || c.topology === json) continue;
        c.topology = json;
        this.write(c, 'topology', json);
      }
    }
  }

  private broadcast(modelId: string, event: string, data: unknown): void {
    let json: string | undefined;
    for (const c of [...this.clients]) {
      if (c.modelId !== modelId) continue;
      json ??= JSON.stringify(data);
      this.write(c, event, json);
    }
  }

  private write(c: Client, event: string, json: string): void {
    this.send(c, `event: ${event}\ndata: ${json}\n\n`);
  }

  private send(c: Client, text: string): void {
    if (!this.clients.has(c)) return;
    if (c.res.writableLength > MAX_QUEUED_BYTES) {
      this.o.log(
        'warn',
        `live stream of ${c.modelId}: the client reads too slowly (over ${MAX_QUEUED_BYTES} bytes queued); closing it`,
      );
      this.drop(c);
      c.res.destroy();
      return;
    }
    c.res.write(text);
  }

  private drop(c: Client): void {
    if (!this.clients.delete(c)) return;
    if (!c.res.writableEnded) c.res.end();
    if (this.clients.size === 0) {
      if (this.timer) clearInterval(this.timer);
      if (this.keepAlive) clearInterval(this.keepAlive);
      this.timer = this.keepAlive = null;
    }
  }
}
