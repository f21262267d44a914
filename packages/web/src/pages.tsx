import type { Route } from './logic/route.js';
import { CreatePage } from './pages/create.js';
import { InstancePage } from './pages/instance.js';
import { InstancesPage } from './pages/instances.js';
import { AuditPage, HostsPage } from './pages/operator.js';
import { AccountPage, ProjectPage, ProjectsPage, TokensPage, UsersPage } from './pages/people.js';
import { ImagesPage, NetworksPage } from './pages/resources.js';
import { SecurityGroupsPage } from './pages/security-groups.js';
import { NatPage } from './pages/nat.js';
import { VpnPage } from './pages/vpn.js';
import { useSession } from './session.js';
import { Header, Link } from './ui/kit.js';

/** The page of a route (operator pages only for operators). */
export function Pages(props: { route: Route }) {
  const { user } = useSession();
  const r = props.route;
  const operatorOnly = r.page === 'hosts' || r.page === 'users' || r.page === 'audit';
  if (operatorOnly && !user.operator) return <NotFound />;
  switch (r.page) {
    case 'instances':
      return <InstancesPage />;
    case 'create':
      return <CreatePage />;
    case 'instance':
      return <InstancePage key={r.id} id={r.id} tab={r.tab} />;
    case 'images':
      return <ImagesPage />;
    case 'networks':
      return <NetworksPage />;
    case 'security-groups':
      return <SecurityGroupsPage />;
    case 'floating-ips':
      return <NatPage />;
    case 'vpn':
      return <VpnPage />;
    case 'projects':
      return <ProjectsPage />;
    case 'project':
      return <ProjectPage id={r.id} />;
    case 'tokens':
      return <TokensPage />;
    case 'hosts':
      return <HostsPage />;
    case 'users':
      return <UsersPage />;
    case 'audit':
      return <AuditPage />;
    case 'account':
      return <AccountPage />;
    default:
      return <NotFound />;
  }
}

function NotFound() {
  return (
    <>
      <Header title="Not found" />
      <p>
        There is no such page. <Link to="/instances">Back to the instances</Link>
      </p>
    </>
  );
}
