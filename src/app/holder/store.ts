import type { PrivateKey } from '@libp2p/interface';
import { create } from 'zustand';

/**
 * This tab's libp2p identity, the one the Volunteer page trains with (IndexedDB, same origin), loaded once
 * per page. identity-browser pulls in libp2p, so it is imported only when the Holder page asks for it.
 */
export interface HolderPeerState {
  status: 'idle' | 'loading' | 'ready' | 'error';
  peerId?: string;
  key?: PrivateKey;
  error?: string;
  loadPeer(): Promise<void>;
}

export const useHolderPeer = create<HolderPeerState>()((set, get) => ({
  status: 'idle',
  async loadPeer() {
    if (get().status === 'loading' || get().status === 'ready') return;
    set({ status: 'loading', error: undefined });
    try {
      const [{ loadOrCreateKey }, { peerIdFromPrivateKey }] = await Promise.all([
        import('../../net/identity-browser.ts'),
        import('@libp2p/peer-id'),
      ]);
      const key = await loadOrCreateKey();
      set({ status: 'ready', key, peerId: peerIdFromPrivateKey(key).toString() });
    } catch (e) {
      set({ status: 'error', error: `This tab has no peer identity: ${(e as Error).message}` });
    }
  },
}));
