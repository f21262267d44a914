import { useEffect, useRef, type ReactNode } from 'react';
import { navigate } from '../router.js';

/** A link inside the app (no page load). */
export function Link(props: {
  to: string;
  children: ReactNode;
  className?: string;
  label?: string;
  /** The link to the page (or tab) shown now: `aria-current="page"`. */
  current?: boolean;
}) {
  return (
    <a
      href={props.to}
      className={props.className}
      aria-label={props.label}
      aria-current={props.current === true ? 'page' : undefined}
      onClick={(e) => {
        if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
        e.preventDefault();
        navigate(props.to);
      }}
    >
      {props.children}
    </a>
  );
}

/** The state of an instance, a host or an operation as a coloured badge. */
export function Badge(props: { value: string }) {
  return (
    <span className={`badge badge-${props.value}`} data-state={props.value}>
      {props.value}
    </span>
  );
}

/** An error line (announced to screen readers). */
export function ErrorLine(props: { error: string | undefined }) {
  if (props.error === undefined) return null;
  return (
    <p className="error" role="alert">
      {props.error}
    </p>
  );
}

/** A page title and its actions. */
export function Header(props: { title: ReactNode; children?: ReactNode }) {
  const ref = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    document.title = `${typeof props.title === 'string' ? props.title : 'floe'} · floe`;
  }, [props.title]);
  return (
    <header className="page-header">
      <h1 ref={ref} tabIndex={-1}>
        {props.title}
      </h1>
      <div className="actions">{props.children}</div>
    </header>
  );
}

/** Labels as key=value chips. */
export function Labels(props: { labels: Record<string, string> }) {
  const entries = Object.entries(props.labels);
  if (entries.length === 0) return <span className="muted">–</span>;
  return (
    <span className="labels">
      {entries.map(([k, v]) => (
        <code key={k} className="chip">
          {k}={v}
        </code>
      ))}
    </span>
  );
}

/** A horizontal bar of `value` out of `max`. */
export function Meter(props: { value: number; max: number; label: string }) {
  const pct = props.max > 0 ? Math.min(100, (props.value / props.max) * 100) : 0;
  return (
    <div
      className="meter"
      role="meter"
      aria-label={props.label}
      aria-valuenow={props.value}
      aria-valuemin={0}
      aria-valuemax={props.max}
    >
      <div className={pct > 90 ? 'meter-fill high' : 'meter-fill'} style={{ width: `${pct}%` }} />
    </div>
  );
}

/** A secret shown once, with a copy button. */
export function Secret(props: { label: string; value: string }) {
  return (
    <div className="secret" role="status">
      <strong>{props.label}</strong> (shown once):
      <code>{props.value}</code>
      <button type="button" onClick={() => void navigator.clipboard?.writeText(props.value)}>
        Copy
      </button>
    </div>
  );
}
