import type { QuotaLimitsChange } from '@floe/api';
import { useEffect, useState } from 'react';
import { client, errorText, useLoad } from '../api.js';
import { limitsChange } from '../logic/headroom.js';
import { useSession } from '../session.js';
import { ErrorLine } from '../ui/kit.js';

/**
 * A project's own limits, changed in place: shown to operators and to owners of the parent project, the
 * callers `PUT /v1/projects/{id}/limits` accepts. An empty field is no limit of its own.
 */
export function ProjectLimitsEditor(props: {
  project: string;
  parent: string | null;
  /** The dimensions, in the order usage lists them. */
  dimensions: readonly string[];
  onSaved: () => void;
}) {
  const { user } = useSession();
  const parentRole = useLoad(
    async () =>
      user.operator || props.parent === null
        ? null
        : (await client.members.list(props.parent).catch(() => [])).find((m) => m.user === user.name)?.role,
    [props.parent, user],
  );
  const may = user.operator || parentRole.data === 'owner';
  const current = useLoad(
    async () => (may ? (await client.projects.limits(props.project)).limits : undefined),
    [props.project, may],
  );
  const [fields, setFields] = useState<Record<string, string>>({});
  const [error, setError] = useState<string>();
  const [saved, setSaved] = useState(false);
  useEffect(() => {
    const l = current.data as Readonly<Record<string, number>> | undefined;
    if (l !== undefined)
      setFields(Object.fromEntries(props.dimensions.map((d) => [d, l[d] === undefined ? '' : String(l[d])])));
  }, [current.data, props.dimensions]);
  if (!may) return null;
  return (
    <form
      className="panel limits"
      aria-label="Limits"
      onSubmit={(e) => {
        e.preventDefault();
        let change: QuotaLimitsChange;
        try {
          change = limitsChange(fields);
        } catch (err) {
          setError((err as Error).message);
          return;
        }
        client.projects.setLimits(props.project, change).then(
          () => {
            setError(undefined);
            setSaved(true);
            current.reload();
            props.onSaved();
          },
          (err: unknown) => setError(errorText(err)),
        );
      }}
    >
      <h2>Limits</h2>
      <p className="small muted">Empty: no limit of this project&apos;s own (its parents&apos; still apply).</p>
      <div className="limit-fields">
        {props.dimensions.map((d) => (
          <label key={d}>
            {d}
            <input
              inputMode="numeric"
              value={fields[d] ?? ''}
              onChange={(e) => {
                setSaved(false);
                setFields((f) => ({ ...f, [d]: e.target.value.trim() }));
              }}
            />
          </label>
        ))}
      </div>
      <button type="submit">Save limits</button>
      {saved && <span role="status"> Limits saved.</span>}
      <ErrorLine error={error ?? current.error} />
    </form>
  );
}
