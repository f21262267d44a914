import { parentPort } from 'node:worker_threads';
import { Pool } from 'undici';
import type { Target } from './load-worker.js';
import { serveJobs } from './worker.js';

/** Jobs of the IPAM load worker. */
export type IpamJob =
  | { kind: 'nics'; target: Target; instanceIds: string[]; network: string }
  | { kind: 'remove'; target: Target; nics: Array<{ instanceId: string; nicId: string }> }
  | { kind: 'close' };

/** What one `POST /v1/instances/{id}/nics` answered. */
export interface NicAnswer {
  status: number;
  /** The NIC allocated (2xx), or null. */
  nic: { id: string; instance: string; ipv4: string | null; ipv6: string | null } | null;
  /** The error body or message otherwise. */
  error: string | null;
  latencyMs: number;
}

/** A burst of NIC creates, all sent at once; `ms` from the first sent to the last answered. */
export interface NicsResult {
  answers: NicAnswer[];
  ms: number;
}

let pool: Pool | null = null;

// One keep-alive connection per request, opened (TLS handshakes done) before the clock runs.
async function connected(target: Target, connections: number): Promise<Pool> {
  if (pool === null) {
    pool = new Pool(target.origin, { connections, pipelining: 1, connect: { ca: target.ca } });
    await Promise.all(
      Array.from({ length: connections }, async () =>
        (await pool!.request({ path: '/healthz', method: 'GET' })).body.dump(),
      ),
    );
  }
  return pool;
}

async function nics(job: Extract<IpamJob, { kind: 'nics' }>): Promise<NicsResult> {
  const p = await connected(job.target, job.instanceIds.length);
  const headers = { ...job.target.headers, 'content-type': 'application/json' };
  const body = JSON.stringify({ network: job.network });
  const t0 = performance.now();
  const answers = await Promise.all(
    job.instanceIds.map(async (id): Promise<NicAnswer> => {
      const s = performance.now();
      try {
        const res = await p.request({
          path: `/v1/instances/${encodeURIComponent(id)}/nics`,
          method: 'POST',
          headers,
          body,
        });
        const text = await res.body.text();
        const latencyMs = performance.now() - s;
        if (res.statusCode >= 200 && res.statusCode < 300) {
          return {
            status: res.statusCode,
            nic: (JSON.parse(text) as { nic: NicAnswer['nic'] }).nic,
            error: null,
            latencyMs,
          };
        }
        return { status: res.statusCode, nic: null, error: text.slice(0, 300), latencyMs };
      } catch (err) {
        return { status: 0, nic: null, error: (err as Error).message, latencyMs: performance.now() - s };
      }
    }),
  );
  return { answers, ms: performance.now() - t0 };
}

/** Remove NICs (not measured); answers the number of failures and the first error. */
async function remove(
  job: Extract<IpamJob, { kind: 'remove' }>,
): Promise<{ failed: number; firstError: string | null }> {
  const p = await connected(job.target, job.nics.length);
  let failed = 0;
  let firstError: string | null = null;
  await Promise.all(
    job.nics.map(async (n) => {
      const res = await p.request({
        path: `/v1/instances/${encodeURIComponent(n.instanceId)}/nics/${encodeURIComponent(n.nicId)}`,
        method: 'DELETE',
        headers: job.target.headers,
      });
      const text = await res.body.text();
      if (res.statusCode < 200 || res.statusCode > 299) {
        failed++;
        firstError ??= `${res.statusCode} ${text.slice(0, 300)}`;
      }
    }),
  );
  return { failed, firstError };
}

serveJobs<IpamJob>(parentPort!, async (job) => {
  switch (job.kind) {
    case 'nics':
      return nics(job);
    case 'remove':
      return remove(job);
    case 'close':
      await pool?.close();
      pool = null;
      return null;
  }
});
