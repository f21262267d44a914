import type { Member, Project, User } from '@floe/api';
import { csrfFromCookies } from '@floe/client/browser';
import { useCallback, useEffect, useMemo, useState } from 'react';
import { client, errorText, listAll, onSessionEnded } from './api.js';
import { NAV } from './nav.js';
import { Pages } from './pages.js';
import { navigate, useRoute } from './router.js';
import { SessionContext, type Session } from './session.js';
import { Link } from './ui/kit.js';
import { Login } from './ui/login.js';
import { TaskPanel } from './ui/tasks.js';

const PROJECT_KEY = 'floe.project';

/** The app: the sign-in page, or the shell (navigation, page, task panel) of a signed-in user. */
export function App() {
  const [user, setUser] = useState<User | null | undefined>(undefined);
  useEffect(() => {
    // Without the session's readable CSRF cookie there is no session to ask about (and no 401 to log).
    if (csrfFromCookies(document.cookie) === undefined) setUser(null);
    else client.users.me().then(setUser, () => setUser(null));
    return onSessionEnded(() => setUser(null));
  }, []);
  if (user === undefined) return <p className="loading">Loading…</p>;
  if (user === null) return <Login onSignedIn={setUser} />;
  return <Shell user={user} onSignedOut={() => setUser(null)} />;
}

function Shell(props: { user: User; onSignedOut: () => void }) {
  const { user } = props;
  const route = useRoute();
  const [projects, setProjects] = useState<Project[]>([]);
  const [project, setProjectState] = useState<string>(localStorage.getItem(PROJECT_KEY) ?? '');
  const [role, setRole] = useState<Session['role']>(user.operator ? 'operator' : 'none');
  const [menuOpen, setMenuOpen] = useState(false);
  const [error, setError] = useState<string>();

  useEffect(() => {
    listAll((q) => client.projects.list(q)).then(
      (ps) => {
        setProjects(ps);
        setProjectState((cur) => (ps.some((p) => p.name === cur) ? cur : (ps[0]?.name ?? '')));
      },
      (err: unknown) => setError(errorText(err)),
    );
  }, []);
  useEffect(() => {
    if (user.operator || project === '') return;
    client.members.list(project).then(
      (ms: Member[]) => setRole(ms.find((m) => m.user === user.name)?.role ?? 'none'),
      () => setRole('none'),
    );
  }, [project, user]);

  const setProject = useCallback((name: string) => {
    localStorage.setItem(PROJECT_KEY, name);
    setProjectState(name);
  }, []);
  const signOut = useCallback(() => {
    void client.session.logout().finally(() => {
      props.onSignedOut();
      navigate('/', true);
    });
  }, [props]);
  const session = useMemo<Session>(
    () => ({ user, projects, project, role, setProject, signOut }),
    [user, projects, project, role, setProject, signOut],
  );
  useEffect(() => setMenuOpen(false), [route.page]);

  return (
    <SessionContext.Provider value={session}>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <div className="shell">
        <header className="topbar">
          <button
            type="button"
            className="menu-toggle"
            aria-expanded={menuOpen}
            aria-controls="nav"
            onClick={() => setMenuOpen((o) => !o)}
          >
            Menu
          </button>
          <Link to="/instances" className="brand">
            floe
          </Link>
          <label className="project-pick">
            <span>Project</span>
            <select value={project} onChange={(e) => setProject(e.target.value)}>
              {projects.map((p) => (
                <option key={p.id} value={p.name}>
                  {p.name}
                </option>
              ))}
            </select>
          </label>
          <span className="whoami">
            <Link to="/account">{user.name}</Link> <span className="muted">({role})</span>
          </span>
          <button type="button" onClick={signOut}>
            Sign out
          </button>
        </header>
        <nav id="nav" className={menuOpen ? 'nav open' : 'nav'} aria-label="Main">
          <ul>
            {NAV.filter((n) => !n.operator || user.operator).map((n) => (
              <li key={n.path}>
                <Link to={n.path} className={location.pathname.startsWith(n.path) ? 'active' : ''}>
                  {n.label}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <main id="main">
          {error !== undefined && <p className="error">{error}</p>}
          {project === '' && projects.length === 0 ? <p>No project yet.</p> : <Pages route={route} />}
        </main>
        <TaskPanel />
      </div>
    </SessionContext.Provider>
  );
}
