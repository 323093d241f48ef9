import { describe, expect, it } from 'vitest';
import { InMemoryNetwork } from '../../src/train/memory-transport.ts';
import { TransportError } from '../../src/train/transport.ts';
import { sampleFrame, transportCompliance } from './transport.compliance.ts';

const endpoints = (network: InMemoryNetwork, n: number) => {
  const endpoints = Array.from({ length: n }, (_, i) => network.endpoint(`e${i}`));
  return { endpoints, cleanup: () => endpoints.forEach((e) => e.close()) };
};

transportCompliance('in-memory network', async (n) => endpoints(new InMemoryNetwork(), n));

// A shaped link (1 Gbit/s, 2 ms) delays delivery and holds send() until the link took the frame.
transportCompliance('in-memory network with shaped links', async (n) =>
  endpoints(new InMemoryNetwork(() => ({ bitsPerSecond: 1e9, latencyMs: 2 })), n),
);

describe('InMemoryNetwork', () => {
  it('refuses a second endpoint with the same id', () => {
    const net = new InMemoryNetwork();
    net.endpoint('x');
    expect(() => net.endpoint('x')).toThrow(TransportError);
  });

  it('holds send() for the time the link needs for the frame', async () => {
    const net = new InMemoryNetwork(() => ({ bitsPerSecond: 1e6, latencyMs: 0 }));
    const [a, b] = [net.endpoint('a'), net.endpoint('b')];
    const f = sampleFrame('act', 1, 0, 1); // 240 payload + 24 ids + 128 header bytes ≈ 3.1 ms at 1 Mbit/s
    const t0 = performance.now();
    await a.send(b.id, f);
    await a.send(b.id, { ...f, step: 2 });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(5);
    expect((await b.receive(2, 0, 'act', { timeoutMs: 1000 })).step).toBe(2);
  });
});
