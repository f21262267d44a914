import type { Member, Project, ProjectRoleName, Token, User } from '@floe/api';
import { useState } from 'react';
import { client, errorText, listAll, useLoad } from '../api.js';
import { ago } from '../logic/format.js';
import { useSession } from '../session.js';
import { Badge, ErrorLine, Header, Link, Meter, Secret } from '../ui/kit.js';
import { ProjectLimitsEditor } from './project-limits.js';

/** Projects the user sees; operators create new ones. */
export function ProjectsPage() {
  const { user } = useSession();
  const projects = useLoad(() => listAll<Project>((q) => client.projects.list(q)), []);
  const [name, setName] = useState('');
  const [error, setError] = useState<string>();
  return (
    <>
      <Header title="Projects" />
      <ErrorLine error={error ?? projects.error} />
      <ul className="plain">
        {projects.data?.map((p) => (
          <li key={p.id}>
            <Link to={`/projects/${encodeURIComponent(p.name)}`}>{p.name}</Link>
          </li>
        ))}
      </ul>
      {user.operator && (
        <form
          className="inline-form panel"
          onSubmit={(e) => {
            e.preventDefault();
            client.projects.create({ name }).then(projects.reload, (err: unknown) => setError(errorText(err)));
          }}
        >
          <label>
            New project
            <input value={name} onChange={(e) => setName(e.target.value.trim())} required />
          </label>
          <button type="submit">Create</button>
        </form>
      )}
    </>
  );
}

const ROLES: ProjectRoleName[] = ['owner', 'member', 'viewer'];

/** One project: usage against its limits, its members and their roles. */
export function ProjectPage(props: { id: string }) {
  const { user: me } = useSession();
  const usage = useLoad(() => client.projects.usage(props.id), [props.id]);
  const members = useLoad(() => client.members.list(props.id), [props.id]);
  const [user, setUser] = useState('');
  const [role, setRole] = useState<ProjectRoleName>('member');
  const [error, setError] = useState<string>();
  // Owners (and operators) manage the members; everyone else reads them.
  const owns = me.operator || members.data?.find((m) => m.user === me.name)?.role === 'owner';
  const run = (p: Promise<unknown>) =>
    p.then(
      () => members.reload(),
      (err: unknown) => setError(errorText(err)),
    );
  return (
    <>
      <Header title={`Project ${props.id}`} />
      <ErrorLine error={error ?? usage.error} />
      <h2>Usage and limits</h2>
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th>Dimension</th>
              <th>Used</th>
              <th>Limit</th>
              <th>Left</th>
              <th className="hide-narrow" />
            </tr>
          </thead>
          <tbody>
            {usage.data?.dimensions.map((d) => (
              <tr key={d.dimension}>
                <td>{d.dimension}</td>
                <td>{d.used_subtree}</td>
                <td>{d.limit ?? 'none'}</td>
                <td>{d.available ?? '∞'}</td>
                <td className="hide-narrow">
                  {d.limit !== null && <Meter value={d.used_subtree} max={d.limit} label={`${d.dimension} used`} />}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {usage.data !== undefined && (
        <ProjectLimitsEditor
          project={props.id}
          parent={usage.data.parent}
          dimensions={usage.data.dimensions.map((d) => d.dimension)}
          onSaved={usage.reload}
        />
      )}
      <h2>Members</h2>
      <ErrorLine error={members.error} />
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th>User</th>
              <th>Role</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {members.data?.map((m: Member) => (
              <tr key={m.user_id}>
                <td>{m.user}</td>
                <td>
                  <select
                    aria-label={`Role of ${m.user}`}
                    value={m.role}
                    disabled={!owns}
                    onChange={(e) =>
                      void run(client.members.update(props.id, m.user, e.target.value as ProjectRoleName))
                    }
                  >
                    {ROLES.map((r) => (
                      <option key={r}>{r}</option>
                    ))}
                  </select>
                </td>
                <td>
                  {owns && (
                    <button
                      type="button"
                      className="danger"
                      onClick={() => void run(client.members.remove(props.id, m.user))}
                    >
                      Remove
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {owns && (
        <form
          className="inline-form panel"
          aria-label="Add a member"
          onSubmit={(e) => {
            e.preventDefault();
            void run(client.members.add(props.id, { user, role }));
          }}
        >
          <label>
            User
            <input value={user} onChange={(e) => setUser(e.target.value.trim())} required />
          </label>
          <label>
            Role
            <select value={role} onChange={(e) => setRole(e.target.value as ProjectRoleName)}>
              {ROLES.map((r) => (
                <option key={r}>{r}</option>
              ))}
            </select>
          </label>
          <button type="submit">Add member</button>
        </form>
      )}
    </>
  );
}

/** API tokens: the caller's own (all for operators), a new personal one, revocation. */
export function TokensPage() {
  const { user, project } = useSession();
  const tokens = useLoad(() => listAll<Token>((q) => client.tokens.list(q)), []);
  const [name, setName] = useState('');
  const [days, setDays] = useState(90);
  const [secret, setSecret] = useState<string>();
  const [error, setError] = useState<string>();
  return (
    <>
      <Header title="API tokens" />
      <ErrorLine error={error ?? tokens.error} />
      {secret !== undefined && <Secret label="New token" value={secret} />}
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th>Name</th>
              <th>State</th>
              <th className="hide-narrow">Projects</th>
              <th className="hide-narrow">Last used</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {tokens.data?.map((t) => (
              <tr key={t.id}>
                <td>
                  {t.name} {t.admin && <span className="chip">admin</span>}
                </td>
                <td>
                  <Badge value={t.state} />
                </td>
                <td className="hide-narrow">{t.projects.join(', ') || '–'}</td>
                <td className="hide-narrow">{ago(t.last_used_at)}</td>
                <td>
                  {t.state === 'active' && (
                    <button
                      type="button"
                      className="danger"
                      onClick={() =>
                        void client.tokens.delete(t.id).then(tokens.reload, (e: unknown) => setError(errorText(e)))
                      }
                    >
                      Revoke
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <form
        className="inline-form panel"
        onSubmit={(e) => {
          e.preventDefault();
          client.tokens.create({ name, user: user.name, projects: [project], expires_in_days: days }).then(
            (c) => {
              setSecret(c.secret);
              tokens.reload();
            },
            (err: unknown) => setError(errorText(err)),
          );
        }}
      >
        <label>
          Name
          <input value={name} onChange={(e) => setName(e.target.value.trim())} required />
        </label>
        <label>
          Expires in (days)
          <input type="number" min={1} max={3650} value={days} onChange={(e) => setDays(Number(e.target.value))} />
        </label>
        <button type="submit">Create token for {project}</button>
      </form>
    </>
  );
}

/** The signed-in user's own page: who they are and their password. */
export function AccountPage() {
  const { user } = useSession();
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [msg, setMsg] = useState<string>();
  return (
    <>
      <Header title="Account" />
      <dl className="facts">
        <dt>User</dt>
        <dd>{user.name}</dd>
        <dt>Operator</dt>
        <dd>{user.operator ? 'yes' : 'no'}</dd>
        <dt>Two-factor</dt>
        <dd>{user.totp ? 'TOTP on' : 'off'}</dd>
      </dl>
      {user.has_password && (
        <form
          className="panel"
          onSubmit={(e) => {
            e.preventDefault();
            client.users.changePassword(current, next).then(
              () => setMsg('Password changed.'),
              (err: unknown) => setMsg(errorText(err)),
            );
          }}
        >
          <label>
            Current password
            <input
              type="password"
              autoComplete="current-password"
              value={current}
              onChange={(e) => setCurrent(e.target.value)}
            />
          </label>
          <label>
            New password
            <input type="password" autoComplete="new-password" value={next} onChange={(e) => setNext(e.target.value)} />
          </label>
          <button type="submit">Change password</button>
          {msg !== undefined && <p role="status">{msg}</p>}
        </form>
      )}
    </>
  );
}

/** Users (operators): the list, a new local user, disabling. */
export function UsersPage() {
  const users = useLoad(() => listAll<User>((q) => client.users.list(q)), []);
  const [name, setName] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string>();
  return (
    <>
      <Header title="Users" />
      <ErrorLine error={error ?? users.error} />
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th>Name</th>
              <th>Source</th>
              <th>Operator</th>
              <th>TOTP</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {users.data?.map((u) => (
              <tr key={u.id}>
                <td>{u.name}</td>
                <td>{u.source ?? 'local'}</td>
                <td>{u.operator ? 'yes' : ''}</td>
                <td>{u.totp ? 'on' : ''}</td>
                <td>
                  <button
                    type="button"
                    onClick={() =>
                      void client.users
                        .update(u.id, { disabled: !u.disabled })
                        .then(users.reload, (e: unknown) => setError(errorText(e)))
                    }
                  >
                    {u.disabled ? 'Enable' : 'Disable'}
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <form
        className="inline-form panel"
        onSubmit={(e) => {
          e.preventDefault();
          client.users.create({ name, password }).then(users.reload, (err: unknown) => setError(errorText(err)));
        }}
      >
        <label>
          Name
          <input value={name} onChange={(e) => setName(e.target.value.trim())} required />
        </label>
        <label>
          Password
          <input
            type="password"
            autoComplete="new-password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            required
          />
        </label>
        <button type="submit">Create user</button>
      </form>
    </>
  );
}
