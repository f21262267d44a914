import { Session } from 'node:inspector/promises';
import { writeFile } from 'node:fs/promises';
import { FloeClient } from '@floe/client';
import { storeTargetsFor } from '../../packages/server/src/db/testing.js';
import { startTestControlPlane } from '../../packages/server/src/testing.js';
import { BenchWorker } from '../worker.js';
import type { LoadJob, RateResult } from '../load-worker.js';
import type { AgentJob } from '../agent-worker.js';
import { issueClientCert, certificateSerial } from '../../packages/server/src/ca/index.js';
import { mkdtemp, writeFile as wf } from 'node:fs/promises';
import os from 'node:os'; import path from 'node:path';

const which = process.env.STORE ?? 'sqlite';
const target = storeTargetsFor(process.env).find((t) => t.name === which)!;
const cp = await startTestControlPlane(await target.open(), { FLOE_LOG_LEVEL: 'error' });
let certPem = '', keyPem = '';
const { id: hostId } = await cp.app.services.hosts.ensureLocal('h', async (hid) => { const c = await issueClientCert(cp.ca, { commonName: hid }); certPem = c.certPem; keyPem = c.keyPem; return { serial: certificateSerial(c.certPem) }; });
const dataDir = await mkdtemp(path.join(os.tmpdir(), 'floe-prof-'));
await wf(path.join(dataDir, 'agent.key'), keyPem); await wf(path.join(dataDir, 'agent.crt'), certPem); await wf(path.join(dataDir, 'ca.crt'), cp.ca.certPem);
await wf(path.join(dataDir, 'agent.json'), JSON.stringify({ server: cp.url, host_id: hostId, host_name: 'h' }));
const agent = new BenchWorker<AgentJob>(new URL('../agent-worker.ts', import.meta.url), { dataDir, server: cp.url, cpus: 16, memoryMib: 65536 });
await agent.call({ kind: 'start' });
const client = new FloeClient({ url: cp.url, token: cp.adminToken, ca: cp.ca.certPem });
for (let i = 0; i < 100; i++) { try { if ((await client.hosts.get(hostId)).status.state === 'online') break; } catch {} await new Promise((r) => setTimeout(r, 100)); }
await client.images.create({ name: 'img' });
const { instance } = await client.instances.create({ name: 'vm', image: 'img', machine_type: 'nano' });
await new Promise((r) => setTimeout(r, 500));
await agent.call({ kind: 'stop' }); await agent.close();
const load = new BenchWorker<LoadJob>(new URL('../load-worker.ts', import.meta.url));
import Fastify from 'fastify';
let origin = cp.url;
if (process.env.BARE) {
  const app = Fastify({ logger: false, https: { key: cp.pki.server.keyPem, cert: cp.pki.server.certPem, ca: [cp.pki.caPem], requestCert: true, rejectUnauthorized: false } });
  app.get('/', async () => (process.env.BIG ? JSON.parse(JSON.stringify(instance)) : { hello: 'world' }));
  await app.listen({ host: '127.0.0.1', port: 0 });
  origin = `https://127.0.0.1:${(app.server.address() as any).port}`;
}
const t = { origin, ca: cp.ca.certPem, headers: { authorization: `Bearer ${cp.adminToken}` } };
const pathReq = process.env.BARE ? '/' : process.env.REQ ?? `/v1/instances/${instance.id}`;
await load.call<RateResult>({ kind: 'rate', target: t, path: pathReq, connections: 32, warmupMs: 500, durationMs: 1500 });
const session = new Session(); session.connect();
if (process.env.PROF) { await session.post('Profiler.enable'); await session.post('Profiler.setSamplingInterval', { interval: 100 }); await session.post('Profiler.start'); }
const r = await load.call<RateResult>({ kind: 'rate', target: t, path: pathReq, connections: 32, warmupMs: 500, durationMs: 4000 });
if (process.env.PROF) { const { profile } = await session.post('Profiler.stop'); await writeFile(process.env.PROF, JSON.stringify(profile)); }
console.log(which, pathReq, 'req/s', Math.round(r.requests / 4), 'non2xx', r.non2xx, 'p50', r.latencies[Math.floor(r.latencies.length / 2)]?.toFixed(2));
await load.close(); await client.close(); await cp.close();
