import { QueryClient } from '@tanstack/react-query';

/** One react-query client for the Researcher, Volunteer and Leaderboards pages (the Holder page has its own). */
export const queryClient = new QueryClient({ defaultOptions: { queries: { refetchOnWindowFocus: false, retry: 1 } } });
