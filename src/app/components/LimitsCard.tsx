import { useAppStore } from '../store.ts';
import { formatBytes, formatCount } from '../format.ts';

/** Plain-language names for the limits Tessera's kernels size themselves by. */
const LIMITS: Array<[key: string, label: string, bytes: boolean]> = [
  ['maxComputeWorkgroupStorageSize', 'Workgroup memory (kernel tiles)', true],
  ['maxComputeInvocationsPerWorkgroup', 'Threads per workgroup', false],
  ['maxComputeWorkgroupSizeX', 'Workgroup size, x', false],
  ['maxComputeWorkgroupSizeY', 'Workgroup size, y', false],
  ['maxComputeWorkgroupsPerDimension', 'Workgroups per dispatch dimension', false],
  ['maxStorageBuffersPerShaderStage', 'Storage buffers per kernel', false],
  ['maxStorageBufferBindingSize', 'Largest tensor binding', true],
  ['maxBufferSize', 'Largest buffer', true],
  ['maxUniformBufferBindingSize', 'Largest uniform binding', true],
  ['maxBindGroups', 'Bind groups', false],
];

export function LimitsCard() {
  const adapter = useAppStore((s) => s.adapter);
  if (!adapter) return null;
  const known = new Set(LIMITS.map(([k]) => k));
  const rows = [
    ...LIMITS.filter(([k]) => k in adapter.limits),
    ...Object.keys(adapter.limits)
      .filter((k) => !known.has(k))
      .map((k): [string, string, boolean] => [k, k, false]),
  ];
  return (
    <section className="card" aria-labelledby="limits-title" data-testid="limits">
      <h2 id="limits-title">Limits and features</h2>
      <p className="muted small">Tessera reads these at run time and sizes every kernel to fit them.</p>
      <dl className="limits">
        {rows.map(([key, label, bytes]) => {
          const v = adapter.limits[key];
          return (
            <div className="limit" key={key} data-limit={key}>
              <dt>
                {label}
                <code className="limit-key">{key}</code>
              </dt>
              <dd>
                <span className="limit-value">{bytes ? formatBytes(v) : formatCount(v)}</span>
                {bytes && <span className="limit-raw">{v}</span>}
              </dd>
            </div>
          );
        })}
      </dl>
      {adapter.features.length ? (
        <details className="features">
          <summary id="features-title">Optional features ({adapter.features.length})</summary>
          <ul className="chips" aria-labelledby="features-title" data-testid="features">
            {adapter.features.map((f) => (
              <li key={f} className="chip">
                {f}
              </li>
            ))}
          </ul>
        </details>
      ) : (
        <p className="muted">No optional features.</p>
      )}
    </section>
  );
}
