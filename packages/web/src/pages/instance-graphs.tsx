import { useEffect, useMemo, useState } from 'react';
import { client, errorText } from '../api.js';
import { mergePoints, niceMax, svgPath, toSeries, type Point, type StatsPoint } from '../logic/chart.js';
import { formatBytes } from '../logic/format.js';

const HOUR_MS = 3600_000;
const W = 600;
const H = 140;

/** One graph: lines of series in an SVG, a scale and the newest values. */
function Chart(props: {
  title: string;
  lines: { label: string; points: Point[]; cls: string }[];
  unit: (v: number) => string;
  from: number;
  to: number;
}) {
  const max = niceMax(props.lines.flatMap((l) => l.points.map((p) => p.v)));
  const drawn = props.lines.some((l) => l.points.length > 0);
  return (
    <figure className="chart" data-chart={props.title}>
      <figcaption>
        <strong>{props.title}</strong>{' '}
        {props.lines.map((l) => (
          <span key={l.label} className={`legend ${l.cls}`}>
            {l.label}: {l.points.length > 0 ? props.unit(l.points[l.points.length - 1]!.v) : '–'}
          </span>
        ))}
      </figcaption>
      <svg
        viewBox={`0 0 ${W} ${H}`}
        preserveAspectRatio="none"
        role="img"
        aria-label={`${props.title}, last ${Math.round((props.to - props.from) / 60_000)} min, up to ${props.unit(max)}`}
      >
        <line x1={0} y1={H / 2} x2={W} y2={H / 2} className="grid" />
        {props.lines.map((l) => (
          <path key={l.label} d={svgPath(l.points, props.from, props.to, max, W, H)} className={`line ${l.cls}`} />
        ))}
      </svg>
      <div className="axis small muted">
        <span>−{Math.round((props.to - props.from) / 60_000)} min</span>
        <span>{drawn ? `max ${props.unit(max)}` : 'no samples yet'}</span>
        <span>now</span>
      </div>
    </figure>
  );
}

/** Stats of the last hour from the bounded history the host keeps, polled for new samples while the page is open. */
export function Graphs(props: { instance: string; project: string }) {
  const [points, setPoints] = useState<StatsPoint[]>([]);
  const [error, setError] = useState<string>();
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    let live = true;
    let last: string | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const poll = async () => {
      let interval = 10;
      try {
        const h = await client.instances.statsHistory(props.instance, {
          project: props.project,
          ...(last === undefined ? {} : { since: last }),
        });
        interval = h.interval_seconds;
        if (!live) return;
        if (h.samples.length > 0) last = h.samples[h.samples.length - 1]!.at;
        setPoints((held) => mergePoints(held, h.samples, Date.now() - HOUR_MS));
        setError(undefined);
      } catch (err) {
        if (live) setError(errorText(err));
      }
      if (!live) return;
      setNow(Date.now());
      timer = setTimeout(() => void poll(), Math.max(2, Math.min(interval, 30)) * 1000);
    };
    void poll();
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [props.instance, props.project]);
  // The last hour, or since the first sample when the host has less (a VM started a few minutes ago).
  const first = points[0] === undefined ? now - HOUR_MS : Date.parse(points[0].at);
  const from = Math.max(now - HOUR_MS, Math.min(first, now - 60_000));
  const series = useMemo(() => toSeries(points), [points]);
  const rate = (v: number) => `${formatBytes(v)}/s`;
  return (
    <section aria-label="Graphs" className="graphs">
      {error !== undefined && <p className="muted small">{error}</p>}
      <Chart
        title="CPU"
        from={from}
        to={now}
        unit={(v) => `${v.toFixed(1)} %`}
        lines={[{ label: 'used', points: series.cpu, cls: 'a' }]}
      />
      <Chart
        title="Memory"
        from={from}
        to={now}
        unit={formatBytes}
        lines={[{ label: 'resident', points: series.memory, cls: 'a' }]}
      />
      <Chart
        title="Disk"
        from={from}
        to={now}
        unit={rate}
        lines={[
          { label: 'read', points: series.disk_read, cls: 'a' },
          { label: 'write', points: series.disk_write, cls: 'b' },
        ]}
      />
      <Chart
        title="Network"
        from={from}
        to={now}
        unit={rate}
        lines={[
          { label: 'in', points: series.net_rx, cls: 'a' },
          { label: 'out', points: series.net_tx, cls: 'b' },
        ]}
      />
    </section>
  );
}
