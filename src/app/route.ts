import { useCallback, useEffect, useState } from 'react';

/**
 * The app's pages, addressed by the URL hash so a static server needs no rewrites: `#/`, `#/volunteer`,
 * `#/researcher?model=…`. A page's own settings ride after `?` in the hash.
 */
export type Route = 'gpu' | 'volunteer' | 'researcher' | 'leaderboards' | 'holder';

export const ROUTES: ReadonlyArray<{ route: Route; href: string; title: string }> = [
  { route: 'gpu', href: '#/', title: 'Your GPU' },
  { route: 'volunteer', href: '#/volunteer', title: 'Volunteer' },
  { route: 'researcher', href: '#/researcher', title: 'Researcher' },
  { route: 'leaderboards', href: '#/leaderboards', title: 'Leaderboards' },
  { route: 'holder', href: '#/holder', title: 'Holder' },
];

const PAGES = new Set<string>(ROUTES.map((r) => r.route));

export function routeOf(hash: string): Route {
  const page = hash.replace(/^#\/?/, '').split(/[/?]/)[0];
  return page !== 'gpu' && PAGES.has(page) ? (page as Route) : 'gpu';
}

/** A setting in the hash's query part: `#/researcher?model=tiny` → hashParam(…, 'model') = 'tiny'. */
export function hashParam(hash: string, name: string): string | undefined {
  const q = hash.indexOf('?');
  return q < 0 ? undefined : (new URLSearchParams(hash.slice(q + 1)).get(name) ?? undefined);
}

/** The hash with `name` set (or removed when `value` is undefined), the page part unchanged. */
export function withHashParam(hash: string, name: string, value: string | undefined): string {
  const q = hash.indexOf('?');
  const page = q < 0 ? hash || '#/' : hash.slice(0, q);
  const params = new URLSearchParams(q < 0 ? '' : hash.slice(q + 1));
  if (value === undefined) params.delete(name);
  else params.set(name, value);
  const rest = params.toString();
  return rest ? `${page}?${rest}` : page;
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => routeOf(location.hash));
  useEffect(() => {
    const update = () => setRoute(routeOf(location.hash));
    addEventListener('hashchange', update);
    return () => removeEventListener('hashchange', update);
  }, []);
  return route;
}

/** A hash setting as state; changing it replaces the history entry (choosing a model is not a page visit). */
export function useHashParam(name: string): [string | undefined, (value: string | undefined) => void] {
  const [value, setValue] = useState(() => hashParam(location.hash, name));
  useEffect(() => {
    const update = () => setValue(hashParam(location.hash, name));
    addEventListener('hashchange', update);
    return () => removeEventListener('hashchange', update);
  }, [name]);
  const set = useCallback(
    (v: string | undefined) => {
      history.replaceState(history.state, '', withHashParam(location.hash, name, v));
      setValue(v);
    },
    [name],
  );
  return [value, set];
}
