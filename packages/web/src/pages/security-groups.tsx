import type { SecurityGroup, SgDefault } from '@floe/api';
import { useState } from 'react';
import { client, errorText, listAll, useLoad } from '../api.js';
import { portText, remoteText, ruleFromForm, type RuleForm } from '../logic/sg.js';
import { canWrite, useSession } from '../session.js';
import { ErrorLine, Header } from '../ui/kit.js';

const EMPTY_RULE: RuleForm = { direction: 'ingress', protocol: 'tcp', port: '', remote: '', description: '' };

/** Security groups: the list, a new group, deletion, default verdicts and the rule editor. */
export function SecurityGroupsPage() {
  const { project, role } = useSession();
  const groups = useLoad(() => listAll<SecurityGroup>((q) => client.securityGroups.list({ ...q, project })), [project]);
  const [name, setName] = useState('');
  const [description, setDescription] = useState('');
  const [error, setError] = useState<string>();
  const writable = canWrite(role);
  const names = new Map((groups.data ?? []).map((g) => [g.id, g.name]));
  const act = (work: Promise<unknown>) =>
    work.then(
      () => {
        setError(undefined);
        groups.reload();
      },
      (e: unknown) => setError(errorText(e)),
    );
  return (
    <>
      <Header title="Security groups" />
      <ErrorLine error={error ?? groups.error} />
      {groups.data?.length === 0 && <p>No security groups in this project yet.</p>}
      {groups.data?.map((g) => (
        <section key={g.id} className="panel" aria-label={`Security group ${g.name}`}>
          <h2>
            {g.name} <span className="chip">{g.status.nics} NICs</span>
          </h2>
          {g.description !== '' && <p>{g.description}</p>}
          <div className="inline-form">
            {(['ingress', 'egress'] as const).map((dir) => (
              <label key={dir}>
                Default {dir}
                <select
                  value={g.spec[`${dir}_default`]}
                  disabled={!writable}
                  onChange={(e) =>
                    void act(
                      client.securityGroups.update(
                        g.id,
                        { spec: { [`${dir}_default`]: e.target.value as SgDefault } },
                        { project },
                      ),
                    )
                  }
                >
                  <option value="deny">deny</option>
                  <option value="allow">allow</option>
                </select>
              </label>
            ))}
            {writable && (
              <button
                type="button"
                className="danger"
                onClick={() => void act(client.securityGroups.delete(g.id, { project }))}
              >
                Delete group
              </button>
            )}
          </div>
          <div className="table-wrap">
            <table>
              <thead>
                <tr>
                  <th>Direction</th>
                  <th>Protocol</th>
                  <th>Ports</th>
                  <th>Remote</th>
                  <th className="hide-narrow">Description</th>
                  {writable && <th />}
                </tr>
              </thead>
              <tbody>
                {g.spec.rules.map((r) => (
                  <tr key={r.id}>
                    <td>{r.direction}</td>
                    <td>{r.protocol}</td>
                    <td>{portText(r)}</td>
                    <td>{remoteText(r, names)}</td>
                    <td className="hide-narrow">{r.description || '–'}</td>
                    {writable && (
                      <td>
                        <button
                          type="button"
                          className="danger"
                          aria-label={`Remove rule ${r.direction} ${r.protocol} ${portText(r)}`}
                          onClick={() => void act(client.securityGroups.removeRule(g.id, r.id, { project }))}
                        >
                          Remove
                        </button>
                      </td>
                    )}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          {writable && <RuleEditor group={g} onAdded={groups.reload} />}
        </section>
      ))}
      {writable && (
        <form
          className="inline-form panel"
          aria-label="New security group"
          onSubmit={(e) => {
            e.preventDefault();
            void act(
              client.securityGroups
                .create({ name, project, ...(description === '' ? {} : { description }) })
                .then(() => {
                  setName('');
                  setDescription('');
                }),
            );
          }}
        >
          <label>
            Name
            <input value={name} onChange={(e) => setName(e.target.value.trim())} required />
          </label>
          <label>
            Description
            <input value={description} onChange={(e) => setDescription(e.target.value)} />
          </label>
          <button type="submit">Create security group</button>
        </form>
      )}
    </>
  );
}

/** The form that adds an allow rule to a group. */
function RuleEditor(props: { group: SecurityGroup; onAdded: () => void }) {
  const { project } = useSession();
  const [form, setForm] = useState<RuleForm>(EMPTY_RULE);
  const [error, setError] = useState<string>();
  const set = (patch: Partial<RuleForm>) => setForm((f) => ({ ...f, ...patch }));
  return (
    <form
      className="inline-form"
      aria-label={`Add a rule to ${props.group.name}`}
      onSubmit={(e) => {
        e.preventDefault();
        const parsed = ruleFromForm(form);
        if ('error' in parsed) return setError(parsed.error);
        client.securityGroups.addRule(props.group.id, parsed.rule, { project }).then(
          () => {
            setError(undefined);
            setForm(EMPTY_RULE);
            props.onAdded();
          },
          (err: unknown) => setError(errorText(err)),
        );
      }}
    >
      <label>
        Direction
        <select value={form.direction} onChange={(e) => set({ direction: e.target.value as RuleForm['direction'] })}>
          <option value="ingress">ingress</option>
          <option value="egress">egress</option>
        </select>
      </label>
      <label>
        Protocol
        <select value={form.protocol} onChange={(e) => set({ protocol: e.target.value as RuleForm['protocol'] })}>
          {(['tcp', 'udp', 'icmp', 'icmpv6', 'any'] as const).map((p) => (
            <option key={p} value={p}>
              {p}
            </option>
          ))}
        </select>
      </label>
      <label>
        Port or range
        <input value={form.port} onChange={(e) => set({ port: e.target.value })} placeholder="all, 22 or 8000-8100" />
      </label>
      <label>
        Remote CIDR or group
        <input value={form.remote} onChange={(e) => set({ remote: e.target.value })} placeholder="anywhere" />
      </label>
      <label>
        Description
        <input value={form.description} onChange={(e) => set({ description: e.target.value })} />
      </label>
      <button type="submit">Add rule</button>
      <ErrorLine error={error} />
    </form>
  );
}
