import type { FloeClient } from '@floe/client';
import { ensureTestImage } from '@floe/testkit/guest-image';
import { storeTargets } from '../../packages/server/src/db/testing.js';
import { prepareAgentDir, startTestControlPlane, type TestControlPlane } from '../../packages/server/src/testing.js';
import { clientFor, eventually, kill } from './helpers.js';
import { startAgentIn, type Namespaces } from './netns.js';

/** A control plane on SQLite listening on `address`, with a short heartbeat: hosts go offline within seconds. */
async function controlPlaneAt(address: string): Promise<TestControlPlane> {
  const sqlite = storeTargets().find((t) => t.name === 'sqlite')!;
  return startTestControlPlane(
    await sqlite.open(),
    { FLOE_HEARTBEAT_MS: '500', FLOE_HOST_OFFLINE_AFTER_MS: '5000' },
    undefined,
    address,
  );
}

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
  const cp = await controlPlaneAt(`${base}.1.1`);
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

/** Two QEMU agents in namespaces of their own, on one control plane, joined by an underlay. */
export interface TwoHosts {
  h1: string;
  h2: string;
  cp: TestControlPlane;
  client: FloeClient;
  hostIds: { h1: string; h2: string };
  agentDirs: { h1: string; h2: string };
  /** The agents in host order; a test that restarts one puts the new process in its place. */
  agents: ReturnType<typeof startAgentIn>[];
  /** The agents' logs, each without the repeats of one retried failure: for failure messages. */
  output: () => string;
}

/**
 * The setup of the end-to-end tests with two hosts: namespaces `h1` and `h2`, each linked to this one
 * (the control plane listens on `<base>.1.1`; h2 reaches it through `<base>.2.1`), joined by an underlay
 * veth (`ul0`, `<base>.0.1` and `<base>.0.2`: the agents' underlay addresses), a control plane on SQLite
 * with a short heartbeat, and both agents online. `prepare` runs before the control plane starts
 * (uplinks and routes the agents should find).
 */
export async function startTwoHosts(
  namespaces: Namespaces,
  base: string,
  opts: { prepare?: (h1: string, h2: string) => Promise<void> } = {},
): Promise<TwoHosts> {
  const h1 = await namespaces.add('h1');
  const h2 = await namespaces.add('h2');
  const t = namespaces.tag;
  await namespaces.link(
    { ns: null, name: `fe${t}c1`, addr: `${base}.1.1/24` },
    { ns: h1, name: 'cp0', addr: `${base}.1.2/24` },
  );
  await namespaces.link(
    { ns: null, name: `fe${t}c2`, addr: `${base}.2.1/24` },
    { ns: h2, name: 'cp0', addr: `${base}.2.2/24` },
  );
  await namespaces.exec(h2, ['ip', 'route', 'add', `${base}.1.0/24`, 'via', `${base}.2.1`]);
  await namespaces.link(
    { ns: h1, name: 'ul0', addr: `${base}.0.1/24` },
    { ns: h2, name: 'ul0', addr: `${base}.0.2/24` },
  );
  await opts.prepare?.(h1, h2);
  const cp = await controlPlaneAt(`${base}.1.1`);
  const client = clientFor(cp);
  const agents: ReturnType<typeof startAgentIn>[] = [];
  const output = () =>
    agents
      .map((a, i) => {
        const lines = new Set(
          a
            .output()
            .split('\n')
            .map((l) => l.replace(/"time":\d+,|"retry_in_ms":\d+,|"failures":\d+,/g, '')),
        );
        return `--- agent h${i + 1}\n${[...lines].join('\n').slice(-4000)}`;
      })
      .join('\n');
  const one = await prepareAgentDir(cp, 'h1');
  const two = await prepareAgentDir(cp, 'h2');
  agents.push(
    startAgentIn(h1, cp.url, one.dataDir, `${base}.0.1`),
    startAgentIn(h2, cp.url, two.dataDir, `${base}.0.2`),
  );
  try {
    await eventually(
      async () => {
        for (const id of [one.hostId, two.hostId])
          if ((await client.hosts.get(id)).status.state !== 'online') return false;
        return true;
      },
      `both agents online\n${output()}`,
      60_000,
    );
  } catch (err) {
    for (const a of agents) await kill(a);
    await cp.close();
    throw err;
  }
  return {
    h1,
    h2,
    cp,
    client,
    hostIds: { h1: one.hostId, h2: two.hostId },
    agentDirs: { h1: one.dataDir, h2: two.dataDir },
    agents,
    output,
  };
}
