import type { FloeClient } from '@floe/client';
import { ensureTestImage } from '@floe/testkit/guest-image';
import { storeTargets } from '../../packages/server/src/db/testing.js';
import { prepareAgentDir, startTestControlPlane, type TestControlPlane } from '../../packages/server/src/testing.js';
import { clientFor, eventually, kill } from './helpers.js';
import { startAgentIn, type Namespaces } from './netns.js';

/** A control plane on SQLite and one QEMU agent in a namespace of its own, with the test image uploaded. */
export interface VmHost {
  /** The agent's namespace. */
  ns: string;
  cp: TestControlPlane;
  client: FloeClient;
  hostId: string;
  agentDir: string;
  agent: ReturnType<typeof startAgentIn>;
}

/**
 * The setup of the end-to-end tests that boot VMs on one host: a namespace `name` linked to this one
 * (the control plane listens on `<base>.1.1`, the agent's underlay is `<base>.1.2`), a control plane with
 * a short heartbeat, the agent online and schedulable, and the test image as `image` in the default
 * project. `prepare` runs in between, before the agent starts (uplinks and routes it should find).
 */
export async function startVmHost(
  namespaces: Namespaces,
  base: string,
  opts: { name?: string; image?: string | null; prepare?: (ns: string) => Promise<void> } = {},
): Promise<VmHost> {
  const name = opts.name ?? 'h1';
  const ns = await namespaces.add(name);
  await namespaces.link(
    { ns: null, name: `fe${namespaces.tag}c1`, addr: `${base}.1.1/24` },
    { ns, name: 'cp0', addr: `${base}.1.2/24` },
  );
  await opts.prepare?.(ns);
  const sqlite = storeTargets().find((t) => t.name === 'sqlite')!;
  const cp = await startTestControlPlane(
    await sqlite.open(),
    { FLOE_HEARTBEAT_MS: '500', FLOE_HOST_OFFLINE_AFTER_MS: '5000' },
    undefined,
    `${base}.1.1`,
  );
  const client = clientFor(cp);
  const { hostId, dataDir } = await prepareAgentDir(cp, name);
  const agent = startAgentIn(ns, cp.url, dataDir, `${base}.1.2`);
  try {
    await eventually(
      async () => (await client.hosts.get(hostId)).status.state === 'online',
      `the agent online\n${agent.output()}`,
      60_000,
    );
    await client.hosts.update(hostId, { spec: { schedulable: true } });
    const image = opts.image === undefined ? 'floe-test' : opts.image;
    if (image !== null) {
      const file = await ensureTestImage();
      await client.images.create({ name: image });
      await client.images.upload(image, file.path);
    }
  } catch (err) {
    // The caller never gets the agent and control plane to stop: they stop here.
    await kill(agent);
    await cp.close();
    throw err;
  }
  return { ns, cp, client, hostId, agentDir: dataDir, agent };
}
