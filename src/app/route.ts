import { useEffect, useState } from 'react';

/** The app's pages, addressed by the URL hash so a static server needs no rewrites: `#/`, `#/volunteer`, `#/holder`. */
export type Route = 'gpu' | 'volunteer' | 'holder';

export const ROUTES: ReadonlyArray<{ route: Route; href: string; title: string }> = [
  { route: 'gpu', href: '#/', title: 'Your GPU' },
  { route: 'volunteer', href: '#/volunteer', title: 'Volunteer' },
  { route: 'holder', href: '#/holder', title: 'Holder' },
];

export function routeOf(hash: string): Route {
  const page = hash.replace(/^#\/?/, '').split(/[/?]/)[0];
  return page === 'volunteer' || page === 'holder' ? page : 'gpu';
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
