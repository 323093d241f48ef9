import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import type { ProxyOptions } from 'vite';

/**
 * How the app's servers (vite dev and preview in vite.config.ts, `npm start`, the browser test servers) forward
 * /api and /v1 to the coordinator, which checks Host and Origin (src/coordinator/http-guard.ts):
 * - `changeOrigin`: the coordinator sees its own name in Host, not the app's (it refuses Hosts it does not serve:
 *   DNS rebinding);
 * - a write from the app's own page carries the app's Origin, which the coordinator does not know: the proxy vouches
 *   for it and sends the coordinator's origin instead, only when the page's Origin is the very address the request
 *   came to and that address is an IP or localhost (a rebinding page's Origin is its domain name, so it is
 *   forwarded as is and refused). Any other Origin (a foreign page posting to the app's proxy) goes through
 *   unchanged, so the coordinator refuses it.
 */
export function coordinatorProxy(target: string): ProxyOptions {
  const targetOrigin = new URL(target).origin;
  return {
    target,
    changeOrigin: true,
    configure: (proxy) => {
      proxy.on('proxyReq', (proxyReq, req) => {
        if (isOwnOrigin(req)) proxyReq.setHeader('origin', targetOrigin);
      });
    },
  };
}

/** The /api and /v1 proxy table for a coordinator at `target`. */
export function coordinatorProxies(target: string): Record<string, ProxyOptions> {
  return { '/api': coordinatorProxy(target), '/v1': coordinatorProxy(target) };
}

function isOwnOrigin(req: IncomingMessage): boolean {
  const origin = req.headers.origin;
  const host = req.headers.host;
  if (!origin || !host) return false;
  let u: URL;
  try {
    u = new URL(origin);
  } catch {
    return false;
  }
  const name = u.hostname.replace(/^\[|\]$/g, '');
  return u.protocol === 'http:' && u.host === host.toLowerCase() && (name === 'localhost' || isIP(name) !== 0);
}
