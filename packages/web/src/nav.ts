/**
 * The navigation: one entry per page. Pages of later capabilities (security groups, VPN networks) add an
 * entry here and a case in pages.tsx; nothing else changes.
 */
export interface NavEntry {
  path: string;
  label: string;
  /** Shown to operators only. */
  operator?: boolean;
}

export const NAV: readonly NavEntry[] = [
  { path: '/instances', label: 'Instances' },
  { path: '/images', label: 'Images' },
  { path: '/networks', label: 'Networks' },
  { path: '/security-groups', label: 'Security groups' },
  { path: '/floating-ips', label: 'Floating IPs' },
  { path: '/vpn', label: 'VPN' },
  { path: '/projects', label: 'Projects' },
  { path: '/tokens', label: 'Tokens' },
  { path: '/hosts', label: 'Hosts', operator: true },
  { path: '/users', label: 'Users', operator: true },
  { path: '/audit', label: 'Audit log', operator: true },
];
