import {
  Handle,
  Position,
  ReactFlow,
  type Edge,
  type NodeProps,
  type NodeTypes,
  type ReactFlowInstance,
} from '@xyflow/react';
import '@xyflow/react/dist/style.css';
import { useEffect, useMemo, useRef } from 'react';
import type { Topology } from '../coordinator-api.ts';
import { formatCount, formatTokensPerSecond, shortId } from '../format.ts';
import {
  codecRows,
  HEADER_HEIGHT,
  linkLabel,
  ROW_HEIGHT,
  stageLabel,
  topologyGraph,
  topologySummary,
  type PeerNodeData,
  type StageHeaderData,
  type TopologyNode,
} from './shape.ts';
import { ScrollTable } from '../components/ScrollTable.tsx';
import { num, TableHead } from '../components/TableHead.tsx';

// Handles only anchor the edges: nobody draws new links here.
const hidden = { opacity: 0, pointerEvents: 'none' as const };

function StageNode({ data }: NodeProps & { data: StageHeaderData }) {
  return (
    <div className="topo-stage">
      <strong>{data.label}</strong>
      <span>{data.detail}</span>
    </div>
  );
}

function PeerNode({ data }: NodeProps & { data: PeerNodeData }) {
  return (
    <div className={`topo-peer topo-peer-${data.kind}`}>
      <Handle type="target" id="left" position={Position.Left} isConnectable={false} style={hidden} />
      <Handle type="target" id="top" position={Position.Top} isConnectable={false} style={hidden} />
      <strong>{data.label}</strong>
      <span>
        replica {data.replica + 1} · {data.speed}
      </span>
      {data.team && <span>team {data.team}</span>}
      <Handle type="source" id="right" position={Position.Right} isConnectable={false} style={hidden} />
      <Handle type="source" id="bottom" position={Position.Bottom} isConnectable={false} style={hidden} />
    </div>
  );
}

const FIT = { padding: 0.08 };

const NODE_TYPES: NodeTypes = { stage: StageNode as NodeTypes[string], peer: PeerNode as NodeTypes[string] };

/**
 * Stages × peers as a diagram (@xyflow/react), pipeline links left to right and replica sync links down, each
 * labelled with its measured bandwidth and round trip; the tables under it say the same in text (and are what
 * a screen reader and a phone get in full), with the codec at each boundary.
 */
export function TopologyCard({ topology }: { topology?: Topology }) {
  const graph = useMemo(() => (topology ? topologyGraph(topology) : undefined), [topology]);
  const flow = useRef<ReactFlowInstance<TopologyNode, Edge> | null>(null);
  const box = useRef<HTMLDivElement>(null);
  const hasGraph = graph !== undefined;
  // fitView only fits once, at start: refit when the box changes size (phone ⇄ desktop, rotation) and when
  // peers come and go (the effects read refs, so the graph's presence and identity are their keys).
  // biome-ignore lint/correctness/useExhaustiveDependencies: re-subscribes when the graph appears
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const ro = new ResizeObserver(() => void flow.current?.fitView(FIT));
    ro.observe(el);
    return () => ro.disconnect();
  }, [hasGraph]);
  // biome-ignore lint/correctness/useExhaustiveDependencies: refits when the graph changes
  useEffect(() => {
    const t = requestAnimationFrame(() => void flow.current?.fitView(FIT));
    return () => cancelAnimationFrame(t);
  }, [graph]);
  if (!topology || !graph)
    return (
      <p className="muted" role="status">
        Reading the topology…
      </p>
    );
  const rows = Math.max(1, ...topology.stages.map((s) => s.peers.length));
  const height = Math.min(560, HEADER_HEIGHT + rows * ROW_HEIGHT + 40);
  const stageOf = new Map(topology.stages.flatMap((s) => s.peers.map((p) => [p.peerId, s.index] as const)));
  const stageText = (peerId: string) => {
    const s = stageOf.get(peerId);
    return s === undefined ? 'left' : `stage ${s + 1}`;
  };
  const codec = codecRows(topology.boundaries);
  return (
    <>
      <p className="muted small" data-testid="topo-summary">
        {topologySummary(topology)}
      </p>
      <figure className="topo-figure">
        <div
          ref={box}
          className="topo-box"
          style={{ height }}
          role="img"
          aria-label={`Topology diagram: ${topologySummary(topology)}`}
          data-testid="topo-diagram"
        >
          <ReactFlow
            key={`${topology.stages.length}:${rows}`}
            nodes={graph.nodes}
            edges={graph.edges}
            nodeTypes={NODE_TYPES}
            fitView
            fitViewOptions={FIT}
            onInit={(i) => {
              flow.current = i;
            }}
            minZoom={0.2}
            nodesDraggable={false}
            nodesConnectable={false}
            nodesFocusable={false}
            edgesFocusable={false}
            elementsSelectable={false}
            zoomOnScroll={false}
            preventScrolling={false}
            proOptions={{ hideAttribution: true }}
          />
        </div>
        <figcaption className="muted small">
          Solid links carry activations and gradients between stages; dashed ones keep replicas of a stage in sync.
        </figcaption>
      </figure>
      <h3>Peers</h3>
      <ScrollTable label="Peers per stage">
        <table className="results" data-testid="topo-peers">
          <caption className="sr-only">Peers per stage</caption>
          <TableHead columns={['Stage', 'Peer', 'Kind', num('Replica'), num('Speed'), 'Team']} />
          <tbody>
            {topology.stages.flatMap((s) =>
              s.peers.length === 0
                ? [
                    <tr key={`empty-${s.index}`}>
                      <th scope="row">{s.index + 1}</th>
                      <td colSpan={5} className="muted">
                        no holder ({stageLabel(s)})
                      </td>
                    </tr>,
                  ]
                : s.peers.map((p) => (
                    <tr key={p.peerId} data-peer={p.peerId}>
                      <th scope="row">{s.index + 1}</th>
                      <td>
                        <code title={p.peerId}>{shortId(p.peerId)}</code>
                      </td>
                      <td>{p.kind}</td>
                      <td className="num">{p.replica + 1}</td>
                      <td className="num">{formatTokensPerSecond(p.tokensPerSecond)}</td>
                      <td>{p.team ?? '—'}</td>
                    </tr>
                  )),
            )}
          </tbody>
        </table>
      </ScrollTable>
      {topology.links.length > 0 && (
        <>
          <h3>Links</h3>
          <ScrollTable label="Measured links">
            <table className="results" data-testid="topo-links">
              <caption className="sr-only">Measured links between peers</caption>
              <TableHead columns={['Kind', 'From → to', num('Bandwidth · RTT')]} />
              <tbody>
                {topology.links.map((l) => (
                  <tr key={`${l.kind}:${l.from}:${l.to}`}>
                    <td>{l.kind}</td>
                    <td>
                      <code title={l.from}>{shortId(l.from)}</code> ({stageText(l.from)}) →{' '}
                      <code title={l.to}>{shortId(l.to)}</code> ({stageText(l.to)})
                    </td>
                    <td className="num">{linkLabel(l.bytesPerSecond, l.rttMs)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </ScrollTable>
        </>
      )}
      <h3>Codec at each boundary</h3>
      {codec.length === 0 ? (
        <p className="muted">One stage: no boundary, nothing crosses the network.</p>
      ) : (
        <ScrollTable label="Codec at each boundary">
          <table className="results" data-testid="topo-codec">
            <caption className="sr-only">Bytes per token over each stage boundary, measured and uncompressed</caption>
            <TableHead
              columns={['Boundary', 'Codec', num('Measured bytes/token'), num('Raw float32'), num('Smaller by')]}
            />
            <tbody>
              {codec.map((r) => (
                <tr key={r.boundary}>
                  <th scope="row">{r.boundary}</th>
                  <td>
                    <code>{r.codec}</code>
                  </td>
                  <td className="num">
                    {r.measured === null ? 'not yet measured' : formatCount(Math.round(r.measured))}
                  </td>
                  <td className="num">{formatCount(r.raw)}</td>
                  <td className="num">{r.ratio === null ? '—' : `${r.ratio.toFixed(1)}×`}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </ScrollTable>
      )}
    </>
  );
}
