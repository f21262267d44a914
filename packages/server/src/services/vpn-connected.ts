import { fromJson, type Db } from '../db/index.js';

/** The names of a project's VPN networks whose peers reach a private network (connected to it). */
export async function vpnNetworksConnecting(db: Db, project: string, networkId: string): Promise<string[]> {
  const rows = await db.selectFrom('vpn_networks').select(['name', 'spec']).where('project', '=', project).execute();
  return rows
    .filter((r) => fromJson<{ networks: string[] }>(r.spec).networks.includes(networkId))
    .map((r) => r.name)
    .sort();
}
