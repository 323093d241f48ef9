/**
 * The volunteer's preferences, kept in localStorage like a BOINC client's "computing preferences": which model
 * to train, how much of the GPU to use, and when to step aside (tab hidden, running on battery). The hold rule
 * is a pure function so it is unit-tested.
 */
import { create } from 'zustand';
import { createJSONStorage, persist } from 'zustand/middleware';

export interface VolunteerSettings {
  /** A model id, or null for "where most needed" (the coordinator places the peer on the slowest pipeline). */
  preferModel: string | null;
  /** Share of wall time the GPU may work, 0.1–1 (GpuTurns rests t·(1 − d)/d after a turn of t). */
  dutyCycle: number;
  /** Share of GPU turns inference requests get while training also waits, 0–1. */
  inferenceShare: number;
  pauseWhenHidden: boolean;
  pauseOnBattery: boolean;
  set(patch: Partial<Omit<VolunteerSettings, 'set'>>): void;
}

export const DUTY_MIN = 0.1;

export function clampDuty(d: number): number {
  return Number.isFinite(d) ? Math.min(1, Math.max(DUTY_MIN, d)) : 1;
}

export function clampShare(p: number): number {
  return Number.isFinite(p) ? Math.min(1, Math.max(0, p)) : 0.5;
}

export const useVolunteerSettings = create<VolunteerSettings>()(
  persist(
    (set) => ({
      preferModel: null,
      dutyCycle: 1,
      inferenceShare: 0.5,
      pauseWhenHidden: true,
      pauseOnBattery: true,
      set: (patch) =>
        set((s) => ({
          ...patch,
          dutyCycle: clampDuty(patch.dutyCycle ?? s.dutyCycle),
          inferenceShare: clampShare(patch.inferenceShare ?? s.inferenceShare),
        })),
    }),
    { name: 'tessera-volunteer-settings', storage: createJSONStorage(() => localStorage), version: 1 },
  ),
);

export interface DeviceState {
  hidden: boolean;
  /** undefined where the browser does not say (no Battery Status API: Firefox, Safari). */
  onBattery: boolean | undefined;
}

/** Why the tab should hold its work now, in words for the page, or undefined when it may train. */
export function holdReason(
  device: DeviceState,
  s: Pick<VolunteerSettings, 'pauseWhenHidden' | 'pauseOnBattery'>,
): string | undefined {
  if (s.pauseWhenHidden && device.hidden) return 'this tab is hidden';
  if (s.pauseOnBattery && device.onBattery === true) return 'this device is running on battery';
  return undefined;
}

interface BatteryLike extends EventTarget {
  charging: boolean;
}

/**
 * Calls `onChange` with the tab's visibility and power source now and whenever either changes; returns the
 * function that stops watching. navigator.getBattery exists in Chromium only; elsewhere onBattery stays undefined.
 */
export function watchDevice(onChange: (d: DeviceState) => void): () => void {
  let battery: BatteryLike | undefined;
  let stopped = false;
  const report = () => {
    if (!stopped)
      onChange({ hidden: document.visibilityState === 'hidden', onBattery: battery ? !battery.charging : undefined });
  };
  document.addEventListener('visibilitychange', report);
  const getBattery = (navigator as Navigator & { getBattery?: () => Promise<BatteryLike> }).getBattery;
  if (typeof getBattery === 'function') {
    getBattery.call(navigator).then(
      (b) => {
        battery = b;
        b.addEventListener('chargingchange', report);
        report();
      },
      () => {}, // refused (e.g. a permissions policy): treated as unknown
    );
  }
  report();
  return () => {
    stopped = true;
    document.removeEventListener('visibilitychange', report);
    battery?.removeEventListener('chargingchange', report);
  };
}
