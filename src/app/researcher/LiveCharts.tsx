import { CartesianGrid, Legend, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from 'recharts';
import { formatCount, formatTokensPerSecond } from '../format.ts';
import type { LiveState } from './live.ts';
import { latest, lossSeries, recentThroughput } from './shape.ts';

const AXIS = '#8a99ab';
/** Tooltip values in the body text colour: the series colours on the tooltip's white fail contrast (axe). */
const TOOLTIP_TEXT = { color: '#1f2933' };
const tick = (v: number) => (Math.abs(v) >= 100 ? v.toFixed(0) : Number(v.toPrecision(3)).toString());

/**
 * Training and validation loss per step, and tokens/s per step. The charts are pictures (aria-hidden); the
 * caption under each carries the latest figures in words, for reading and for screen readers.
 */
export function LiveCharts({ modelId, live }: { modelId: string; live: LiveState }) {
  const loss = lossSeries(live.metrics);
  const train = latest(live.metrics, 'train');
  const val = latest(live.metrics, 'val');
  const tps = recentThroughput(live.throughput);
  const hasVal = val !== undefined;
  return (
    <div className="research-charts">
      <figure className="research-chart" data-testid="research-loss">
        <div className="research-chart-box" aria-hidden="true">
          {loss.length > 0 ? (
            <ResponsiveContainer width="100%" height="100%">
              <LineChart data={loss} margin={{ top: 8, right: 12, bottom: 4, left: 0 }} accessibilityLayer={false}>
                <CartesianGrid strokeDasharray="3 3" stroke={AXIS} strokeOpacity={0.35} />
                <XAxis
                  dataKey="step"
                  type="number"
                  domain={['dataMin', 'dataMax']}
                  tickLine={false}
                  stroke={AXIS}
                  fontSize={12}
                  allowDecimals={false}
                />
                <YAxis tickFormatter={tick} width={44} stroke={AXIS} fontSize={12} domain={['auto', 'auto']} />
                <Tooltip
                  formatter={(v) => Number(v).toFixed(4)}
                  labelFormatter={(l) => `Step ${l}`}
                  itemStyle={TOOLTIP_TEXT}
                />
                <Legend wrapperStyle={{ fontSize: 13 }} />
                <Line
                  dataKey="train"
                  name="Training loss"
                  stroke="#0e9aa7"
                  strokeWidth={2}
                  dot={false}
                  isAnimationActive={false}
                  connectNulls
                />
                {hasVal && (
                  <Line
                    dataKey="val"
                    name="Validation loss"
                    stroke="#f59e0b"
                    strokeWidth={2}
                    dot={{ r: 3 }}
                    isAnimationActive={false}
                    connectNulls
                  />
                )}
              </LineChart>
            </ResponsiveContainer>
          ) : (
            <p className="research-empty muted">No steps yet.</p>
          )}
        </div>
        <figcaption className="muted small" data-testid="research-loss-caption">
          {train
            ? `Loss of ${modelId}: training ${train.value.toFixed(4)} at step ${formatCount(train.step)}` +
              (val
                ? `, validation ${val.value.toFixed(4)} at step ${formatCount(val.step)}.`
                : ', no validation loss yet.')
            : `No loss reported for ${modelId} yet: the curve starts when its pipeline trains its first step.`}
        </figcaption>
      </figure>
      <figure className="research-chart" data-testid="research-throughput">
        <div className="research-chart-box" aria-hidden="true">
          {live.throughput.length > 0 ? (
            <ResponsiveContainer width="100%" height="100%">
              <LineChart
                data={live.throughput}
                margin={{ top: 8, right: 12, bottom: 4, left: 0 }}
                accessibilityLayer={false}
              >
                <CartesianGrid strokeDasharray="3 3" stroke={AXIS} strokeOpacity={0.35} />
                <XAxis
                  dataKey="step"
                  type="number"
                  domain={['dataMin', 'dataMax']}
                  tickLine={false}
                  stroke={AXIS}
                  fontSize={12}
                  allowDecimals={false}
                />
                <YAxis tickFormatter={tick} width={52} stroke={AXIS} fontSize={12} />
                <Tooltip
                  formatter={(v) => formatTokensPerSecond(Number(v))}
                  labelFormatter={(l) => `Step ${l}`}
                  itemStyle={TOOLTIP_TEXT}
                />
                <Line
                  dataKey="tokensPerSecond"
                  name="Tokens/s"
                  stroke="#6366f1"
                  strokeWidth={2}
                  dot={false}
                  isAnimationActive={false}
                />
              </LineChart>
            </ResponsiveContainer>
          ) : (
            <p className="research-empty muted">No steps yet.</p>
          )}
        </div>
        <figcaption className="muted small" data-testid="research-throughput-caption">
          {tps === undefined
            ? 'Training tokens per second, per step: none yet.'
            : `Training throughput: ${formatTokensPerSecond(tps)} over the last ` +
              `${Math.min(10, live.throughput.length)} steps.`}
        </figcaption>
      </figure>
    </div>
  );
}
