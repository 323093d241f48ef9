import { adapterLabel } from '../../gpu/index.ts';
import { useAppStore } from '../store.ts';

function Field({ label, value, hint }: { label: string; value: string; hint?: string }) {
  return (
    <div className="field">
      <dt>{label}</dt>
      <dd>
        {value ? (
          value
        ) : (
          <span className="muted" title={hint ?? 'Not reported by this browser'}>
            not reported
          </span>
        )}
      </dd>
    </div>
  );
}

/** Which GPU WebGPU gave us, and whether it is a real GPU or a CPU emulating one. */
export function AdapterCard() {
  const adapter = useAppStore((s) => s.adapter);
  const timing = useAppStore((s) => s.gpu?.timer.source);
  const lost = useAppStore((s) => s.phase === 'lost');
  if (!adapter) return null;
  return (
    <section className="card" aria-labelledby="adapter-title" data-testid="adapter">
      <div className="card-head">
        <h2 id="adapter-title">Adapter</h2>
        <span className={`badge ${adapter.isSoftware ? 'badge-warn' : 'badge-ok'}`} data-testid="adapter-kind">
          {adapter.isSoftware ? 'Software adapter (CPU)' : 'Hardware GPU'}
        </span>
        {lost && <span className="badge badge-error">Disconnected</span>}
      </div>
      <p className="adapter-label" data-testid="adapter-label">
        {adapterLabel(adapter)}
      </p>
      <dl className="fields">
        <Field label="Vendor" value={adapter.vendor} />
        <Field label="Architecture" value={adapter.architecture} />
        <Field label="Device" value={adapter.device} />
        <Field label="Description" value={adapter.description} />
        <Field label="Type" value={adapter.isSoftware ? 'Software (runs on the CPU)' : 'Hardware'} />
        <Field
          label="Runtime"
          value={adapter.runtime === 'browser' ? 'Browser WebGPU (navigator.gpu)' : 'Dawn (Node)'}
        />
        <Field
          label="Kernel timing"
          value={
            timing === 'gpu-timestamps'
              ? 'GPU timestamps'
              : timing === 'wall-clock'
                ? 'Wall clock (no timestamp queries)'
                : ''
          }
        />
      </dl>
      {adapter.isSoftware && (
        <p className="hint">
          This adapter emulates a GPU on your CPU: kernels run correctly, but 100–1000× slower than on a graphics card.
          If this computer has a GPU, turn on hardware acceleration in your browser settings and check{' '}
          <code>chrome://gpu</code>.
        </p>
      )}
    </section>
  );
}
