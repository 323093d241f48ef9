/** What a tab needs before it may volunteer: a GPU that passed the self-test, and no other volunteering tab. */
import type { Gpu } from '../../gpu/index.ts';
import { useAppStore, type AppState } from '../store.ts';

/** Waits for the GPU page's detection and self-test; a device that failed it must not train. */
export function readyGpu(): Promise<Gpu> {
  return new Promise((resolve, reject) => {
    const check = (s: AppState) => {
      if (s.phase === 'unavailable' || s.phase === 'error' || s.phase === 'lost') {
        reject(new Error(`no usable GPU: ${s.problem?.title ?? s.phase} (see "Your GPU")`));
      } else if (s.phase === 'ready' && s.gpu && (s.selfTest.status === 'done' || s.selfTest.status === 'aborted')) {
        if (s.selfTest.passed) resolve(s.gpu);
        else
          reject(
            new Error('this GPU failed the kernel self-test (see "Your GPU"), so its gradients cannot be trusted'),
          );
      } else return;
      unsubscribe();
    };
    const unsubscribe = useAppStore.subscribe(check);
    check(useAppStore.getState());
  });
}

/** One volunteering tab per browser: they would share one peer identity (IndexedDB). */
export function takeLock(): Promise<() => void> {
  if (!navigator.locks) return Promise.resolve(() => {});
  return new Promise((resolve, reject) => {
    void navigator.locks.request('tessera-volunteer', { ifAvailable: true }, (lock) => {
      if (!lock) {
        reject(
          new Error('another tab of this browser is already volunteering (one browser is one peer); leave there first'),
        );
        return;
      }
      return new Promise<void>((release) => resolve(release));
    });
  });
}
