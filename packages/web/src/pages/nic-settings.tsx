import type { Nic, SecurityGroup } from '@floe/api';
import { useState } from 'react';
import { client, errorText } from '../api.js';
import { rateForm, rateFromForm, type RateForm } from '../logic/sg.js';
import { ErrorLine } from '../ui/kit.js';

/** One NIC's security groups, filtering flag and rate limits, changed by one PATCH (an operation). */
export function NicSettings(props: {
  instance: string;
  project: string;
  nic: Nic;
  groups: readonly SecurityGroup[];
  onDone: () => void;
}) {
  const { nic } = props;
  const [groups, setGroups] = useState<string[]>(() =>
    nic.security_groups.map((g) => props.groups.find((x) => x.id === g || x.name === g)?.name ?? g),
  );
  const [filtering, setFiltering] = useState(nic.filtering);
  const [rate, setRate] = useState<RateForm>(() => rateForm(nic.rate_limit));
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const toggle = (name: string, on: boolean) =>
    setGroups((gs) => (on ? [...gs.filter((g) => g !== name), name] : gs.filter((g) => g !== name)));
  return (
    <form
      className="inline-form panel"
      aria-label={`Settings of NIC ${nic.index}`}
      onSubmit={(e) => {
        e.preventDefault();
        const parsed = rateFromForm(rate);
        if ('error' in parsed) return setError(parsed.error);
        setBusy(true);
        setError(undefined);
        client.instances
          .updateNic(
            props.instance,
            nic.id,
            { security_groups: groups, filtering, rate_limit: parsed.limit },
            { project: props.project },
          )
          .then((r) => client.operations.wait(r.operation, { timeoutMs: 300_000 }))
          .then(props.onDone, (err: unknown) => setError(errorText(err)))
          .finally(() => setBusy(false));
      }}
    >
      <fieldset>
        <legend>Security groups (none: the project&apos;s default)</legend>
        {props.groups.map((g) => (
          <label key={g.id} className="check">
            <input
              type="checkbox"
              checked={groups.includes(g.name)}
              onChange={(e) => toggle(g.name, e.target.checked)}
            />
            {g.name}
          </label>
        ))}
      </fieldset>
      <label className="check">
        <input type="checkbox" checked={filtering} onChange={(e) => setFiltering(e.target.checked)} />
        Filtering by security groups
      </label>
      {(Object.keys(rate) as (keyof RateForm)[]).map((k) => (
        <label key={k}>
          {k.replace('_', ' ')}
          <input
            inputMode="numeric"
            value={rate[k]}
            placeholder="no limit"
            onChange={(e) => setRate((r) => ({ ...r, [k]: e.target.value }))}
          />
        </label>
      ))}
      <button type="submit" disabled={busy}>
        Apply
      </button>
      <ErrorLine error={error} />
    </form>
  );
}
