import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './App.tsx';
import { registeredOps, useAppStore, type AppState } from './store.ts';
import './styles.css';
import './test-hooks.ts';
import { useVolunteerStore, type VolunteerState } from './volunteer/store.ts';

function publish(s: AppState): void {
  window.__tesseraSelfTest = {
    phase: s.phase,
    status: s.selfTest.status,
    finished: s.selfTest.status === 'done',
    passed: s.selfTest.passed ?? false,
    ops: [...registeredOps],
    reports: s.selfTest.reports,
    adapter: s.adapter,
    ms: s.selfTest.ms,
  };
}
publish(useAppStore.getState());
useAppStore.subscribe(publish);

function publishVolunteer(s: VolunteerState): void {
  const { status, detail, error, peerId, assignment, stepsDone, lastStep, peers, bytesSent, bytesReceived } = s;
  window.__tesseraVolunteer = {
    status,
    detail,
    error,
    peerId,
    assignment,
    stepsDone,
    lastStep,
    peers,
    bytesSent,
    bytesReceived,
  };
}
publishVolunteer(useVolunteerStore.getState());
useVolunteerStore.subscribe(publishVolunteer);

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);

void useAppStore.getState().connect();
